//! One worker thread: pinned to its CPU, with its own interpreter, I/O loop (io_uring, or
//! epoll where io_uring is unavailable: chosen once per process) and listener.

use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crossbeam_channel::Sender;

use super::worker_process::Report;
use crate::config::{IoMode, WorkerConfig};
use crate::http::HeadLimits;
use crate::io::{self, Epoll, Transport, Uring};
use crate::worker::{Control, Limits, Pool, SpoolSettings, Timeouts, Worker};
use crate::wsgi::{AppSettings, EnvironSettings, SubInterpreter, Wsgi};

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
fn choose_loop(mode: IoMode) -> Result<Loop, String> {
    static CHOICE: OnceLock<Result<Loop, String>> = OnceLock::new();
    CHOICE
        .get_or_init(|| match (mode, io::probe_uring()) {
            (IoMode::Epoll, _) => {
                tracing::info!("io: epoll (--io epoll)");
                Ok(Loop::Epoll)
            }
            (_, Ok(())) => {
                tracing::info!("io: io_uring");
                Ok(Loop::Uring)
            }
            // An old kernel: `Uring` falls back to a plain ring, as asked.
            (IoMode::Uring, Err(e)) if e.raw_os_error() == Some(libc::EINVAL) => {
                tracing::info!("io: io_uring (--io uring)");
                Ok(Loop::Uring)
            }
            (IoMode::Uring, Err(e)) => Err(explain_ring_error(&e)),
            (IoMode::Auto, Err(e)) => {
                let cause = ring_error_cause(&e).map_or(String::new(), |c| format!(", {c}"));
                tracing::info!("io: epoll (io_uring unavailable: {e}{cause})");
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
        },
        max_connections: config.worker_connections,
    }
}

/// One worker thread: pinned CPU, own interpreter, own I/O loop, own listener.
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
    // The transport is set up on this thread, which drives it (`Uring` is single-issuer).
    match choose_loop(config.io) {
        Ok(Loop::Uring) => match Uring::new(listener, RING_ENTRIES) {
            Ok(ring) => serve(ring, index, config, control, tx),
            Err(e) => fail(explain_ring_error(&e)),
        },
        Ok(Loop::Epoll) => match Epoll::new(listener) {
            Ok(epoll) => serve(epoll, index, config, control, tx),
            Err(e) => fail(format!("cannot set up epoll: {e}")),
        },
        Err(e) => fail(e),
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
) {
    let cpu = config.cpus[index];
    let fail = |error: String| {
        let _ = tx.send(Report::Failed { error });
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
    let waker = io.waker();
    let _ = tx.send(Report::Ready {
        waker: waker.clone(),
    });
    if control.stop.load(Ordering::Acquire) {
        waker.wake();
    }
    let limits = worker_limits(config);
    let head_limits = limits.head;
    let mut worker = Worker::new(io, wsgi, limits, control);
    if config.stats {
        worker = worker.with_stats(index, cpu);
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
