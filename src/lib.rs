//! ringwsgi: a WSGI (PEP 3333) HTTP/1.1 server for Linux.
//!
//! # Design
//!
//! A master process binds the listeners and supervises one worker process, which runs one
//! thread per core. Each worker thread is pinned to its CPU and owns everything on its request
//! path: an io_uring ring (or an epoll loop), its listeners (an SO_REUSEPORT socket of its own per TCP bind, the
//! shared socket of a unix or inherited bind), and an own-GIL CPython subinterpreter
//! (PEP 684). Workers share nothing while serving, so they scale with cores.
//!
//! A request flows one way through the modules:
//!
//! ```text
//! socket ──► io (ring, buffers) ──► http (parse in place) ──► worker (batch of a round)
//!        ◄── io (one submission) ◄── http (encode head)  ◄── wsgi (environ, call, body)
//! ```
//!
//! - [`io`] owns the io_uring loop: accept, receive, send, close, timers, wake-ups. It knows
//!   nothing of HTTP. An epoll loop with the same interface stands in where io_uring is
//!   unavailable (`--io`); an in-memory transport drives a worker without sockets (tests,
//!   benches).
//! - [`http`] knows bytes and HTTP/1.1: the request head is parsed with httparse straight out
//!   of the connection's read buffer (no copy of the header bytes), then responses are encoded.
//!   It knows nothing of Python.
//! - [`wsgi`] knows Python: subinterpreters, loading the app, the environ built from the parsed
//!   request, the call, start_response and the response body. It knows nothing of sockets.
//! - [`worker`] joins them for one core. Requests that complete in the same round of
//!   completions are handled back to back without leaving the interpreter, and their responses
//!   leave in the submission that starts the next round.
//! - [`server`] starts, supervises and stops the worker process and its threads; [`config`] and
//!   the thin Python package (`python/ringwsgi`) are the user's front door.
//! - [`metrics`] keeps every worker's statistics block in memory shared with the master, which
//!   serves them to Prometheus (`--metrics-bind`); each worker writes only its own block, and
//!   the access log (`worker::access_log`) is written once per round.
//!
//! Lifecycle: on SIGTERM a worker drains (it stops accepting, answers every request it
//! received, closes connections as they fall idle); a watchdog ([`wsgi::Watchdog`]) interrupts
//! app calls that run past `--timeout`; a worker process that should go (`--max-requests`, a
//! call stuck in C code) asks the master over its status pipe to be replaced.
//!
//! Code the compiler cannot check (io_uring submissions, CPython FFI) lives only in [`io`] and
//! [`wsgi`], behind small safe APIs.

pub mod config;
pub mod cpus;
pub mod http;
pub mod io;
pub mod logging;
pub mod metrics;
pub mod server;
pub mod worker;
pub mod wsgi;

use std::path::PathBuf;

use pyo3::prelude::*;

/// Entry point of the `ringwsgi` command (master) and of the worker process it starts.
/// Returns the process exit code.
#[pyfunction]
fn main(py: Python<'_>, argv: Vec<String>, executable: PathBuf) -> i32 {
    if let Ok(config) = std::env::var(server::WORKER_CONFIG_ENV) {
        return server::run_worker_process(py, &config);
    }
    let argv: Vec<std::ffi::OsString> = argv.into_iter().map(Into::into).collect();
    let args = match config::load(&argv, &config::ringwsgi_env()) {
        Ok(config::Invocation::Serve(args)) => args,
        Ok(config::Invocation::PrintConfig(text)) => {
            print!("{text}");
            return 0;
        }
        Err(config::LoadError::Usage(err)) => {
            let _ = err.print();
            return err.exit_code();
        }
        Err(err) => {
            eprintln!("error: {err}");
            return err.exit_code();
        }
    };
    py.detach(|| server::run_master(*args, executable))
}

/// The extension module. Imported only by the main interpreter of the master and of the worker
/// process: subinterpreters cannot load it, and never need to.
#[pymodule]
fn _ringwsgi(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(main, m)?)
}
