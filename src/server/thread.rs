//! One worker thread: pinned to its CPU, with its own interpreter (a subinterpreter, or its own
//! thread state in the main interpreter in `--mode process`), ring and listeners.

use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use super::worker_process::Report;
use crate::config::WorkerConfig;
use crate::http::HeadLimits;
use crate::io::{Transport, Uring};
use crate::worker::access_log::AccessLog;
use crate::worker::{Control, Limits, Pool, Proxies, SpoolSettings, Timeouts, Worker};
use crate::wsgi::{AppSettings, EnvironSettings, Interpreter, Wsgi};

/// io_uring submission queue size per worker thread.
const RING_ENTRIES: u32 = 4096;

/// Why io_uring could not be set up, with what to do about it.
fn explain_ring_error(e: &std::io::Error) -> String {
    let hint = match e.raw_os_error() {
        Some(libc::ENOMEM) => {
            " (io_uring rings count against RLIMIT_MEMLOCK: raise it, e.g. LimitMEMLOCK=infinity in \
             a systemd unit or `ulimit -l`, or grant CAP_IPC_LOCK; see tuning/README.md)"
        }
        Some(libc::EPERM) | Some(libc::ENOSYS) => {
            " (io_uring is disabled here: kernel.io_uring_disabled, or a container's seccomp \
             profile; see tuning/README.md)"
        }
        _ => "",
    };
    format!("cannot set up io_uring: {e}{hint}")
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

/// One worker thread: pinned CPU, own interpreter, own ring, own listeners.
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
    let fail = |error: String| {
        let _ = tx.send(Report::Failed {
            error,
            refused_by: None,
        });
    };
    let access_log = match &config.access_logfile {
        Some(path) => match AccessLog::open(path, &config.access_logformat) {
            Ok(log) => Some(log),
            Err(e) => {
                return fail(format!(
                    "cannot open the access log {}: {e}",
                    path.display()
                ))
            }
        },
        None => None,
    };
    let interpreter = match Interpreter::new(config.interpreters) {
        Ok(i) => i,
        Err(e) => return fail(e.to_string()),
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
    let ring = match Uring::new(listeners, RING_ENTRIES) {
        Ok(r) => r,
        Err(e) => {
            interpreter.attach(|py| wsgi.release(py));
            interpreter.end();
            return fail(explain_ring_error(&e));
        }
    };
    let raiser = control.watchdog.raiser(interpreter.reference());
    let watcher = raiser.as_ref().map(|r| r.watcher());
    if let (Some(watcher), 1) = (&watcher, config.threads) {
        // The app runs inline on this thread (a pool's threads register themselves).
        interpreter.attach(|py| wsgi.watch_calls(watcher.watch(py)));
    }
    let waker = ring.waker();
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
    let mut worker = Worker::new(ring, wsgi, limits, control);
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
