//! One worker thread: pinned to its CPU, with its own interpreter, ring and listener.

use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;

use super::worker_process::Report;
use crate::config::WorkerConfig;
use crate::http::HeadLimits;
use crate::io::{Transport, Uring};
use crate::worker::access_log::AccessLog;
use crate::worker::{Control, Limits, Pool, SpoolSettings, Timeouts, Worker};
use crate::wsgi::{AppSettings, EnvironSettings, SubInterpreter, Wsgi};

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
        },
        max_connections: config.worker_connections,
    }
}

/// One worker thread: pinned CPU, own interpreter, own ring, own listener.
pub(super) fn worker_thread(
    index: usize,
    listener: TcpListener,
    config: &WorkerConfig,
    control: Arc<Control>,
    tx: Sender<Report>,
) {
    let cpu = config.cpus[index];
    if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
        tracing::warn!("worker thread {index}: cannot pin to CPU {cpu}");
    }
    let fail = |error: String| {
        let _ = tx.send(Report::Failed { error });
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
    let interpreter = match SubInterpreter::new() {
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
    let wsgi = match interpreter.attach(|py| Wsgi::load(py, &settings)) {
        Ok(w) => w,
        Err(e) => {
            interpreter.end();
            return fail(e.to_string());
        }
    };
    let ring = match Uring::new(listener, RING_ENTRIES) {
        Ok(r) => r,
        Err(e) => {
            interpreter.attach(|py| wsgi.release(py));
            interpreter.end();
            return fail(explain_ring_error(&e));
        }
    };
    let waker = ring.waker();
    let _ = tx.send(Report::Ready {
        waker: waker.clone(),
    });
    if control.stop.load(Ordering::Acquire) {
        waker.wake();
    }
    let limits = worker_limits(config);
    let head_limits = limits.head;
    let mut worker = Worker::new(ring, wsgi, limits, control);
    if let Some(stats) = crate::metrics::worker_stats(config.stats_slot + index) {
        worker = worker.with_stats(stats, config.stats.then_some((index, cpu)));
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
    interpreter.attach(|py| wsgi.release(py));
    interpreter.end();
    let _ = tx.send(Report::Exited {
        index,
        error: result.err().map(|e| e.to_string()),
    });
}
