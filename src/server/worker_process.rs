//! The worker process: adopts the listeners the master passed, prepares the main interpreter,
//! runs one pinned worker thread per configured CPU and stops them on a signal.

use std::net::TcpListener;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crossbeam_channel::Receiver;
use pyo3::Python;
use signal_hook::consts::{SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::iterator::Signals;

use super::thread::worker_thread;
use super::{signal_name, StartError, EXIT_BOOT_ERROR, WORKER_CONFIG_ENV, WORKER_FDS_ENV};
use crate::config::WorkerConfig;
use crate::io::{self, Waker};
use crate::logging::{init_logging, LogHandle};
use crate::worker::Control;
use crate::wsgi;

/// Messages from the worker threads (and the signal thread) to the worker process's main thread.
pub(super) enum Report {
    Ready { waker: Waker },
    Failed { error: String },
    Exited { index: usize, error: Option<String> },
    Signal(i32),
}

/// The worker process: runs one pinned worker thread per configured CPU until SIGTERM/SIGINT.
/// Called on the main thread of the process, attached to the main interpreter.
pub fn run_worker_process(py: Python<'_>, config_json: &str) -> i32 {
    let config: WorkerConfig = match serde_json::from_str(config_json) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ringwsgi: {}", StartError::WorkerConfig(e.to_string()));
            return 1;
        }
    };
    let log = match init_logging(&config.log) {
        Ok(log) => log,
        Err(err) => {
            eprintln!("ringwsgi: {err}");
            return 1;
        }
    };
    // Die with the master (it may be SIGKILLed), and forget the hand-over variables.
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM);
    let fds = std::env::var(WORKER_FDS_ENV).unwrap_or_default();
    std::env::remove_var(WORKER_CONFIG_ENV);
    std::env::remove_var(WORKER_FDS_ENV);
    let listeners: Result<Vec<TcpListener>, _> = fds
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|fd| {
            fd.parse::<RawFd>()
                .map_err(std::io::Error::other)
                .and_then(io::adopt_listener)
        })
        .collect();
    let listeners = match listeners {
        Ok(l) if l.len() == config.cpus.len() => l,
        Ok(_) => {
            tracing::error!("the master passed the wrong number of listeners");
            return 1;
        }
        Err(e) => {
            tracing::error!("cannot use the listeners passed by the master: {e}");
            return 1;
        }
    };
    wsgi::prepare_main_interpreter(py);
    py.detach(|| supervise_threads(config, listeners, &log))
}

fn supervise_threads(config: WorkerConfig, listeners: Vec<TcpListener>, log: &LogHandle) -> i32 {
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut signals = match Signals::new([SIGTERM, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2]) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{}", StartError::Signals(e));
            return 1;
        }
    };
    let signal_handle = signals.handle();
    let signal_tx = tx.clone();
    let signal_thread = std::thread::spawn(move || {
        for sig in signals.forever() {
            let _ = signal_tx.send(Report::Signal(sig));
        }
    });
    let control = Arc::new(Control::default());
    let config = Arc::new(config);
    let threads: Vec<_> = listeners
        .into_iter()
        .enumerate()
        .map(|(index, listener)| {
            let (config, control, tx) = (config.clone(), control.clone(), tx.clone());
            std::thread::Builder::new()
                .name(format!("ringwsgi-worker-{index}"))
                .spawn(move || worker_thread(index, listener, &config, control, tx))
                .expect("spawn worker thread")
        })
        .collect();
    let code = wait_for_threads(&rx, threads.len(), &control, log);
    for thread in threads {
        let _ = thread.join();
    }
    signal_handle.close();
    let _ = signal_thread.join();
    code
}

/// Waits for every thread to boot, then for a signal or a thread's unexpected end; then stops
/// all threads and waits until they have exited. Returns the process's exit code.
fn wait_for_threads(rx: &Receiver<Report>, n: usize, control: &Control, log: &LogHandle) -> i32 {
    let mut wakers = Vec::new();
    let mut running = n;
    let mut code = 0;
    let mut stopping = false;
    while running > 0 {
        let Ok(report) = rx.recv() else { break };
        match report {
            Report::Ready { waker } => {
                wakers.push(waker);
                if wakers.len() == n {
                    tracing::info!("{n} worker threads ready (pid {})", std::process::id());
                }
            }
            Report::Failed { error } => {
                running -= 1;
                if code == 0 {
                    tracing::error!("{error}");
                    code = EXIT_BOOT_ERROR;
                }
                stopping = true;
            }
            Report::Exited { index, error } => {
                running -= 1;
                if let Some(error) = error {
                    tracing::error!("worker thread {index} failed: {error}");
                    code = 1;
                }
                stopping = true;
            }
            Report::Signal(SIGUSR1) => log.reopen(),
            Report::Signal(SIGUSR2) => {
                control.report.fetch_add(1, Ordering::AcqRel);
                wakers.iter().for_each(Waker::wake);
            }
            Report::Signal(sig) => {
                tracing::debug!("worker process got {}", signal_name(sig));
                stopping = true;
            }
        }
        if stopping {
            control.stop.store(true, Ordering::Release);
            wakers.iter().for_each(Waker::wake);
        }
    }
    code
}
