//! One worker thread: pinned to its CPU, with its own interpreter (a subinterpreter, or its own
//! thread state in the main interpreter in `--mode process`), I/O loop (io_uring, or epoll where
//! io_uring is unavailable: chosen once per process) and listeners.

use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use super::worker_process::Report;
use crate::config::{IoMode, WorkerConfig};
use crate::http::HeadLimits;
use crate::io::{self, Epoll, Transport, Uring};
use crate::worker::access_log::AccessLog;
use crate::worker::{Control, Limits, Pool, Proxies, SpoolSettings, Timeouts, Worker};
use crate::wsgi::{AppSettings, EnvironSettings, Interpreter, Wsgi};

/// io_uring submission queue size per worker thread.
const RING_ENTRIES: u32 = 4096;

/// The likely cause of an io_uring set-up error, if known.
fn ring_error_cause(e: &std::io::Error) -> Option<&'static str> {
    match e.raw_os_error()? {
        libc::ENOMEM => Some(
            "io_uring rings count against RLIMIT_MEMLOCK: raise it, e.g. LimitMEMLOCK=infinity in \
             a systemd unit or `ulimit -l`, or grant CAP_IPC_LOCK",
        ),
        libc::EPERM | libc::ENOSYS => Some("a seccomp profile or kernel.io_uring_disabled"),
        libc::EINVAL => Some("a kernel before 6.1, without IORING_SETUP_DEFER_TASKRUN"),
        _ => None,
    }
}

/// Why io_uring could not be set up, with what to do about it.
fn explain_ring_error(e: &std::io::Error) -> String {
    let cause = ring_error_cause(e).map_or(String::new(), |c| format!(": {c}"));
    format!(
        "cannot set up io_uring: {e}{cause} (--io epoll or --io auto run without it; \
         see tuning/README.md)"
    )
}

/// The transport a worker thread runs.
#[derive(Clone, Copy, Debug)]
enum Loop {
    Uring,
    Epoll,
}

/// Decides the transport for `--io` once per process (the first worker thread probes and
/// logs the choice with its reason; the others reuse it). Err: `--io uring` without io_uring.
/// `announce`: log the choice at info level (the first worker process does; in process mode
/// the others log it at debug level, so the log says it once).
fn choose_loop(mode: IoMode, announce: bool) -> Result<Loop, String> {
    static CHOICE: OnceLock<Result<Loop, String>> = OnceLock::new();
    let say = |choice: String| {
        if announce {
            tracing::info!("io: {choice}");
        } else {
            tracing::debug!("io: {choice}");
        }
    };
    CHOICE
        .get_or_init(|| match (mode, io::probe_uring()) {
            (IoMode::Epoll, _) => {
                say("epoll (--io epoll)".into());
                Ok(Loop::Epoll)
            }
            (_, Ok(())) => {
                say("io_uring".into());
                Ok(Loop::Uring)
            }
            // An old kernel: `Uring` falls back to a plain ring, as asked.
            (IoMode::Uring, Err(e)) if e.raw_os_error() == Some(libc::EINVAL) => {
                say("io_uring (--io uring)".into());
                Ok(Loop::Uring)
            }
            (IoMode::Uring, Err(e)) => Err(explain_ring_error(&e)),
            (IoMode::Auto, Err(e)) => {
                let cause = ring_error_cause(&e).map_or(String::new(), |c| format!(", {c}"));
                say(format!("epoll (io_uring unavailable: {e}{cause})"));
                Ok(Loop::Epoll)
            }
        })
        .clone()
}

/// The limits each worker enforces (the flags were checked by the master).
fn worker_limits(config: &WorkerConfig) -> Limits {
    let secs = |s: f64| Duration::from_secs_f64(s.max(0.001));
    Limits {
        max_body: config.limit_request_body,
        spool: SpoolSettings {
            threshold: config.spool_threshold,
            dir: config.spool_dir.clone(),
        },
        head: HeadLimits {
            request_line: config.limit_request_line,
            fields: config.limit_request_fields,
            field_size: config.limit_request_field_size,
            ..HeadLimits::default()
        },
        timeouts: Timeouts {
            header: secs(config.header_timeout),
            keep_alive: secs(config.keep_alive),
            body: secs(config.body_timeout),
            write: secs(config.write_timeout),
            graceful: secs(config.graceful_timeout),
        },
        max_connections: config.worker_connections,
        max_requests: max_requests(config.max_requests, config.max_requests_jitter),
        proxies: Proxies {
            forwarded_allow: config.forwarded_allow_ips.clone(),
            protocol: config.proxy_protocol.versions(),
            protocol_allow: config.proxy_allow_from.clone(),
        },
    }
}

/// This thread's `--max-requests`: N plus a random number from 0 to the jitter (as gunicorn).
fn max_requests(n: u64, jitter: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    if n == 0 || jitter == 0 {
        return n;
    }
    // A randomly keyed hasher is all the randomness this needs.
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    n + random % (jitter + 1)
}

/// Tells the worker process this thread could not start.
fn report_failure(tx: &Sender<Report>, error: String) {
    let _ = tx.send(Report::Failed {
        error,
        refused_by: None,
    });
}

/// One worker thread: pinned CPU, own interpreter, own I/O loop, own listeners.
pub(super) fn worker_thread(
    index: usize,
    listeners: Vec<OwnedFd>,
    config: &WorkerConfig,
    control: Arc<Control>,
    tx: Sender<Report>,
    go: Receiver<()>,
) {
    let cpu = config.cpus[index];
    if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
        tracing::warn!("worker thread {index}: cannot pin to CPU {cpu}");
    }
    // The transport is set up on this thread, which drives it (`Uring` is single-issuer).
    match choose_loop(config.io, config.first_worker == 0) {
        Ok(Loop::Uring) => match Uring::new(listeners, RING_ENTRIES) {
            Ok(ring) => serve(ring, index, config, control, tx, go),
            Err(e) => report_failure(&tx, explain_ring_error(&e)),
        },
        Ok(Loop::Epoll) => match Epoll::new(listeners) {
            Ok(epoll) => serve(epoll, index, config, control, tx, go),
            Err(e) => report_failure(&tx, format!("cannot set up epoll: {e}")),
        },
        Err(e) => report_failure(&tx, e),
    }
}

/// Loads the app in this thread's own interpreter and runs the worker loop over `io` until
/// it stops.
fn serve<T: Transport>(
    io: T,
    index: usize,
    config: &WorkerConfig,
    control: Arc<Control>,
    tx: Sender<Report>,
    go: Receiver<()>,
) {
    let cpu = config.cpus[index];
    let access_log = match &config.access_logfile {
        Some(path) => match AccessLog::open(path, &config.access_logformat) {
            Ok(log) => Some(log),
            Err(e) => {
                let error = format!("cannot open the access log {}: {e}", path.display());
                return report_failure(&tx, error);
            }
        },
        None => None,
    };
    let interpreter = match Interpreter::new(config.interpreters) {
        Ok(i) => i,
        Err(e) => return report_failure(&tx, e.to_string()),
    };
    let settings = AppSettings {
        spec: config.app.clone(),
        sys_path: config.sys_path.clone(),
        environ: EnvironSettings {
            script_name: config.script_name.clone(),
            multiprocess: config.multiprocess(),
            multithread: config.threads > 1,
            bound: config.bound,
        },
    };
    let mut wsgi = match interpreter.attach(|py| Wsgi::load(py, &settings)) {
        Ok(w) => w,
        Err(e) => {
            interpreter.end();
            let _ = tx.send(Report::Failed {
                error: e.message,
                refused_by: e.refused_by,
            });
            return;
        }
    };
    let raiser = control.watchdog.raiser(interpreter.reference());
    let watcher = raiser.as_ref().map(|r| r.watcher());
    if let (Some(watcher), 1) = (&watcher, config.threads) {
        // The app runs inline on this thread (a pool's threads register themselves).
        interpreter.attach(|py| wsgi.watch_calls(watcher.watch(py)));
    }
    let waker = io.waker();
    let _ = tx.send(Report::Ready {
        waker: waker.clone(),
    });
    // Wait until the master knows this process is ready (or it is stopping).
    let _ = go.recv();
    if control.stop.load(Ordering::Acquire) {
        waker.wake();
    }
    let limits = worker_limits(config);
    let head_limits = limits.head;
    let mut worker = Worker::new(io, wsgi, limits, control);
    let worker_number = config.first_worker + index;
    if let Some(stats) = crate::metrics::worker_stats(worker_number) {
        worker = worker.with_stats(stats, config.stats.then_some((worker_number, cpu)));
    }
    if let Some(log) = access_log {
        worker = worker.with_access_log(log);
    }
    let result = if config.threads > 1 {
        let pool = Pool::start(
            config.threads,
            interpreter.reference(),
            settings,
            head_limits,
            waker,
            watcher,
        );
        worker = worker.with_pool(pool);
        // This thread never attaches while the pool runs: the pool's threads need the GIL.
        worker.run(None)
    } else {
        interpreter.attach(|py| worker.run(Some(py)))
    };
    worker.report_stats();
    let (wsgi, pool) = worker.into_parts();
    if let Some(pool) = pool {
        pool.shutdown();
    }
    if let Some(raiser) = raiser {
        raiser.stop();
    }
    interpreter.attach(|py| wsgi.release(py));
    interpreter.end();
    let _ = tx.send(Report::Exited {
        index,
        error: result.err().map(|e| e.to_string()),
    });
}
