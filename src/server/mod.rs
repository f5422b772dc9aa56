//! Starts, supervises and stops the workers.
//!
//! Topology: the `ringwsgi` process is the master ([`master`]). It never imports the app; it
//! binds the listeners ([`binds`]) and starts the worker process ([`worker_process`]: the same
//! Python running `-m ringwsgi`, told by an environment variable that it is a worker), which
//! inherits the listeners. The worker process runs one OS thread per core ([`thread`]), pinned,
//! each with its own io_uring loop, listener and own-GIL subinterpreter. The listeners stay open
//! in the master for the master's whole life: closing a socket of a reuseport group resets the
//! connections queued on it, and later work restarts workers on the same sockets.
//!
//! Signals reach only the main thread of each process: there, a signal-hook iterator turns them
//! into messages; worker threads are told to stop through their transport's waker.

use std::net::SocketAddr;

use nix::sys::signal::Signal;

use crate::config;

mod binds;
mod master;
pub mod status;
mod thread;
mod worker_process;

pub use master::run_master;
pub use worker_process::run_worker_process;

/// Environment variable carrying the worker's configuration (JSON) from master to worker.
pub const WORKER_CONFIG_ENV: &str = "RINGWSGI_WORKER_CONFIG";
/// Environment variable listing the inherited listener fds, comma-separated, one per thread.
const WORKER_FDS_ENV: &str = "RINGWSGI_WORKER_FDS";

/// Exit code of a worker process whose app could not be loaded (gunicorn's WORKER_BOOT_ERROR).
const EXIT_BOOT_ERROR: i32 = 3;

/// Why the server could not start; printed as one line.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("cannot bind {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("cannot start the worker process: {0}")]
    Spawn(std::io::Error),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("invalid worker configuration from the master: {0}")]
    WorkerConfig(String),
}

fn signal_name(sig: i32) -> &'static str {
    Signal::try_from(sig)
        .map(|s| s.as_str())
        .unwrap_or("signal")
}
