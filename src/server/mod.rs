//! Starts, supervises and stops the workers.
//!
//! Topology: the `ringwsgi` process is the master ([`master`]). It never imports the app; it
//! binds the listeners ([`binds`]) and starts worker processes ([`children`] in the master,
//! [`worker_process`] in the worker: the same Python running `-m ringwsgi`, told by an
//! environment variable that it is a worker), one per worker slot: a slot is the CPUs and
//! listeners one worker process gets. In subinterpreter mode there is one slot with every CPU
//! and the worker process runs one OS thread per core ([`thread`]), pinned, each with its own
//! io_uring loop, listeners and own-GIL subinterpreter; in process mode there is one slot per CPU,
//! and each worker process runs its thread in its main interpreter. The master restarts worker
//! processes that die, and replaces them on SIGHUP or when they ask ([`status`]). The listeners
//! stay open in the master for the master's whole life: closing a socket of a reuseport group
//! resets the connections queued on it, and replacements serve the same sockets. Each TCP bind
//! is one SO_REUSEPORT socket per worker thread; a unix socket, `fd://N` or systemd's socket
//! ([`systemd`]) is one socket every worker thread accepts on. With `--user` the master drops
//! root once bound; `--reload` ([`reload`]) sends the master SIGHUP when the app's code changes.
//!
//! Signals reach only the main thread of each process: there, a signal-hook iterator turns them
//! into messages; worker threads are told to stop through their transport's waker.

use nix::sys::signal::Signal;

use crate::config;

mod binds;
mod children;
mod master;
mod reload;
pub mod status;
mod systemd;
mod thread;
mod worker_process;

pub use master::run_master;
pub use worker_process::run_worker_process;

/// Environment variable carrying the worker's configuration (JSON) from master to worker.
pub const WORKER_CONFIG_ENV: &str = "RINGWSGI_WORKER_CONFIG";
/// Environment variable listing the inherited listener fds of each worker thread
/// ([`binds::adopt_worker_fds`]).
const WORKER_FDS_ENV: &str = "RINGWSGI_WORKER_FDS";

/// Exit code of a worker process whose app could not be loaded (gunicorn's WORKER_BOOT_ERROR),
/// and of a master whose worker process could not boot.
const EXIT_BOOT_ERROR: i32 = 3;
/// Exit code of a worker process whose app could not be loaded because an extension module
/// refuses subinterpreters (the master may fall back to process mode).
const EXIT_SUBINTERPRETERS_REFUSED: i32 = 5;

/// Why the server could not start; printed as one line.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Bind(#[from] binds::BindError),
    #[error("cannot start the worker process: {0}")]
    Spawn(std::io::Error),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("invalid worker configuration from the master: {0}")]
    WorkerConfig(String),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    #[error("--mode subinterpreter needs own-GIL subinterpreters, which need Python 3.13 or newer (this is {0}): use --mode process")]
    NoSubinterpreters(String),
}

fn signal_name(sig: i32) -> &'static str {
    Signal::try_from(sig)
        .map(|s| s.as_str())
        .unwrap_or("signal")
}
