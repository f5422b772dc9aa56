//! The worker process: adopts the listeners and the status pipe the master passed, prepares the
//! main interpreter, runs one pinned worker thread per configured CPU (each in a subinterpreter,
//! or all in the main interpreter in `--mode process`), tells the master when they all serve,
//! and stops them on a signal.

use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use pyo3::Python;
use signal_hook::consts::{SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::iterator::Signals;

use super::status::{self, Status};
use super::thread::worker_thread;
use super::{
    binds, signal_name, StartError, EXIT_BOOT_ERROR, EXIT_SUBINTERPRETERS_REFUSED,
    WORKER_CONFIG_ENV, WORKER_FDS_ENV,
};
use crate::config::WorkerConfig;
use crate::io::Waker;
use crate::logging::{init_logging, LogHandle};
use crate::worker::{Control, Replacement};
use crate::wsgi::{self, Watchdog};

/// Messages from the worker threads (and the signal thread) to the worker process's main thread.
pub(super) enum Report {
    Ready {
        waker: Waker,
    },
    /// The thread could not start; `refused_by`: the package whose extension module refused
    /// the subinterpreter, when that is why.
    Failed {
        error: String,
        refused_by: Option<String>,
    },
    Exited {
        index: usize,
        error: Option<String>,
    },
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
    status::adopt();
    let fds = std::env::var(WORKER_FDS_ENV).unwrap_or_default();
    std::env::remove_var(WORKER_CONFIG_ENV);
    std::env::remove_var(WORKER_FDS_ENV);
    crate::metrics::adopt_shared_memory();
    let listeners = match binds::adopt_worker_fds(&fds, config.cpus.len()) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot use the listeners passed by the master: {e}");
            return 1;
        }
    };
    wsgi::prepare_main_interpreter(py);
    py.detach(|| supervise_threads(config, listeners, &log))
}

fn supervise_threads(config: WorkerConfig, listeners: Vec<Vec<OwnedFd>>, log: &LogHandle) -> i32 {
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
    let replacement = Arc::new(Replacement::new(|reason| {
        status::notify(&Status::Replace(reason.into()))
    }));
    let stuck = replacement.clone();
    let control = Arc::new(Control {
        watchdog: Watchdog::start(
            Duration::from_secs_f64(config.timeout.max(0.0)),
            Duration::from_secs_f64(config.graceful_timeout.max(0.0)),
            move || stuck.ask("timeout"),
        ),
        replacement,
        ..Control::default()
    });
    let config = Arc::new(config);
    // Threads serve only once the master was told they are ready (closing `go` lets them):
    // a worker process that answered a request is never taken for one that could not boot.
    let (go_tx, go_rx) = crossbeam_channel::bounded::<()>(0);
    let threads: Vec<_> = listeners
        .into_iter()
        .enumerate()
        .map(|(index, listener)| {
            let (config, control, tx, go) =
                (config.clone(), control.clone(), tx.clone(), go_rx.clone());
            std::thread::Builder::new()
                .name(format!("ringwsgi-worker-{index}"))
                .spawn(move || worker_thread(index, listener, &config, control, tx, go))
                .expect("spawn worker thread")
        })
        .collect();
    let graceful = Duration::from_secs_f64(config.graceful_timeout.max(0.001));
    let code = wait_for_threads(&rx, threads.len(), &control, graceful, log, go_tx);
    for thread in threads {
        let _ = thread.join();
    }
    signal_handle.close();
    let _ = signal_thread.join();
    code
}

/// Waits for every thread to boot, then for a signal or a thread's unexpected end; then stops
/// all threads and waits until they have exited. Returns the process's exit code. SIGTERM
/// drains (graceful); SIGINT, SIGQUIT, a failed thread stop at once. A thread that has not ended
/// a second after `--graceful-timeout` (stuck in the app) ends the process.
fn wait_for_threads(
    rx: &Receiver<Report>,
    n: usize,
    control: &Control,
    graceful: Duration,
    log: &LogHandle,
    go: Sender<()>,
) -> i32 {
    let mut go = Some(go);
    let mut wakers = Vec::new();
    let mut running = n;
    let mut code = 0;
    let mut stopping = false;
    let mut give_up: Option<Instant> = None;
    while running > 0 {
        let report = match give_up {
            None => rx.recv().ok(),
            Some(at) => match rx.recv_deadline(at) {
                Err(RecvTimeoutError::Timeout) => {
                    tracing::error!(
                        "{running} worker threads did not stop within --graceful-timeout: exiting"
                    );
                    std::process::exit(1);
                }
                report => report.ok(),
            },
        };
        let Some(report) = report else { break };
        match report {
            Report::Ready { waker } => {
                wakers.push(waker);
                if wakers.len() == n {
                    tracing::info!("{n} worker threads ready (pid {})", std::process::id());
                    status::notify(&Status::Ready);
                    drop(go.take());
                }
            }
            Report::Failed { error, refused_by } => {
                running -= 1;
                if code == 0 {
                    if let Some(package) = refused_by {
                        // The master decides what follows (falling back to processes, or not).
                        tracing::warn!("{error}");
                        status::notify(&Status::Refused(package));
                        code = EXIT_SUBINTERPRETERS_REFUSED;
                    } else {
                        tracing::error!("{error}");
                        code = EXIT_BOOT_ERROR;
                    }
                }
                stopping = true;
            }
            Report::Exited { index, error } => {
                running -= 1;
                if let Some(error) = error {
                    tracing::error!("worker thread {index} failed: {error}");
                    code = 1;
                }
                // Threads end on their own only when told to: otherwise stop the others.
                stopping |= !control.drain.load(Ordering::Acquire);
            }
            Report::Signal(SIGUSR1) => log.reopen(),
            Report::Signal(SIGUSR2) => {
                control.report.fetch_add(1, Ordering::AcqRel);
                wakers.iter().for_each(Waker::wake);
            }
            Report::Signal(SIGTERM) => {
                tracing::debug!("worker process got SIGTERM: draining");
                control.drain.store(true, Ordering::Release);
                wakers.iter().for_each(Waker::wake);
                give_up.get_or_insert(Instant::now() + graceful + Duration::from_secs(1));
            }
            Report::Signal(sig) => {
                tracing::debug!("worker process got {}", signal_name(sig));
                stopping = true;
            }
        }
        if stopping {
            drop(go.take());
            control.stop.store(true, Ordering::Release);
            wakers.iter().for_each(Waker::wake);
            give_up.get_or_insert(Instant::now() + graceful + Duration::from_secs(1));
        }
    }
    code
}
