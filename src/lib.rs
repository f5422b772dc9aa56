//! ringwsgi (skeleton; modules land one by one).
