//! The Python side: interpreters, the app, the environ, the call and its response.
//!
//! Knows Python and WSGI (PEP 3333), nothing of sockets: it takes a parsed request
//! ([`crate::http::Request`]) and its body, and writes response bytes into a buffer it is given.
//! All CPython FFI of the crate lives here. Python objects never leave the thread of the
//! interpreter they belong to; those that must outlive one round of I/O (streaming bodies) are
//! kept in a per-worker table and reached through plain handles.
//!
//! PyO3 (0.30) does not support subinterpreters, so this module avoids everything of PyO3 that
//! is process-global (shared/notes/subinterpreters.md): no `#[pyclass]`, `intern!`,
//! `GILOnceCell`/`PyOnceLock` statics, `create_exception!`, `PyMapping`/`PySequence` casts;
//! per-interpreter caches live in [`Wsgi`], and the crate is built with
//! `--cfg pyo3_disable_reference_pool`.

mod app;
mod environ;
mod interpreter;
mod response;
mod start_response;
mod strings;
mod table;
mod watchdog;

pub use app::{AppSettings, CallTimes, LoadError, Respond, Wsgi};
pub use environ::{EnvironBuilder, EnvironSettings, Input};
pub use interpreter::{
    detached, prepare_main_interpreter, python_version, subinterpreters_supported, Interpreter,
    InterpreterError, InterpreterRef, SubInterpreter, ThreadState,
};
pub use response::FileBody;
pub use table::Handle;
pub use watchdog::{CallTimer, CallWatcher, Raiser, Watchdog};
