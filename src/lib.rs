//! ringwsgi (skeleton; modules land one by one).
pub mod io;
