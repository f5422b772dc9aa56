//! ringwsgi (skeleton; modules land one by one).

pub mod http;
pub mod io;
