//! Starts, supervises and stops the workers.
//!
//! Topology: the `ringwsgi` process is the master. It never imports the app; it binds one
//! SO_REUSEPORT listener per worker core and starts one worker process (the same Python running
//! `-m ringwsgi`, told by an environment variable that it is a worker) that inherits the
//! listeners. The worker process runs one OS thread per core, pinned, each with its own io_uring
//! loop, listener and own-GIL subinterpreter. The listeners stay open in the master for the
//! master's whole life: closing a socket of a reuseport group resets the connections queued on it,
//! and later work restarts workers on the same sockets.
//!
//! Signals reach only the main thread of each process: there, a signal-hook iterator turns them
//! into messages; worker threads are told to stop through their transport's waker.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use pyo3::Python;
use signal_hook::consts::{SIGCHLD, SIGINT, SIGQUIT, SIGTERM, SIGUSR2};
use signal_hook::iterator::Signals;

use crate::config::{self, Args, WorkerConfig};
use crate::http::HeadLimits;
use crate::io::{self, Transport, Uring, Waker};
use crate::worker::{Control, Limits, Pool, SpoolSettings, Timeouts, Worker};
use crate::wsgi::{self, AppSettings, EnvironSettings, SubInterpreter, Wsgi};

/// Environment variable carrying the worker's configuration (JSON) from master to worker.
pub const WORKER_CONFIG_ENV: &str = "RINGWSGI_WORKER_CONFIG";
/// Environment variable listing the inherited listener fds, comma-separated, one per thread.
const WORKER_FDS_ENV: &str = "RINGWSGI_WORKER_FDS";

/// Exit code of a worker process whose app could not be loaded (gunicorn's WORKER_BOOT_ERROR).
const EXIT_BOOT_ERROR: i32 = 3;
/// How long a stopping worker process gets before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// io_uring submission queue size per worker thread.
const RING_ENTRIES: u32 = 4096;

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

/// Sets up logging to stderr at `level` (errors in the level fall back to info).
pub fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

// ---------------------------------------------------------------------------------------------
// Master

/// The master: binds, starts the worker process, forwards signals, returns the exit code.
pub fn run_master(args: Args, executable: PathBuf) -> i32 {
    init_logging(&args.log_level);
    match master(args, executable) {
        Ok(code) => code,
        Err(err) => {
            tracing::error!("{err}");
            1
        }
    }
}

fn master(args: Args, executable: PathBuf) -> Result<i32, StartError> {
    config::check_app_spec(&args.app)?;
    let addr = config::parse_bind(&args.bind)?;
    if let Some(dir) = &args.chdir {
        std::env::set_current_dir(dir).map_err(|e| config::ConfigError::Chdir(dir.clone(), e))?;
    }
    let cpus = config::worker_cpus(args.workers)?;
    raise_open_files_limit();
    if args.threads == 0 {
        return Err(config::ConfigError::Threads.into());
    }
    if args.worker_connections == 0 {
        return Err(config::ConfigError::WorkerConnections.into());
    }
    config::seconds("--header-timeout", args.header_timeout)?;
    config::seconds("--keep-alive", args.keep_alive)?;
    config::seconds("--body-timeout", args.body_timeout)?;
    config::seconds("--write-timeout", args.write_timeout)?;
    let spool_dir = match &args.spool_dir {
        Some(dir) => Some(std::path::absolute(dir).map_err(|e| config::ConfigError::Path(dir.display().to_string(), e))?),
        None => None,
    };
    let listeners = bind_listeners(addr, cpus.len(), args.backlog)?;
    let bound = listeners[0].local_addr().map_err(|e| StartError::Bind(addr, e))?;
    let worker_config = WorkerConfig {
        app: args.app.clone(),
        sys_path: config::app_sys_path(args.pythonpath.as_deref())?,
        cpus,
        bound,
        script_name: std::env::var("SCRIPT_NAME").unwrap_or_default(),
        log_level: args.log_level.clone(),
        threads: args.threads,
        limit_request_body: args.limit_request_body,
        spool_threshold: args.spool_threshold,
        spool_dir,
        limit_request_line: args.limit_request_line,
        limit_request_fields: args.limit_request_fields,
        limit_request_field_size: args.limit_request_field_size,
        worker_connections: args.worker_connections,
        header_timeout: args.header_timeout,
        keep_alive: args.keep_alive,
        body_timeout: args.body_timeout,
        write_timeout: args.write_timeout,
        stats: args.stats,
    };
    // Register before spawning so that no SIGCHLD or early SIGTERM is missed.
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGQUIT, SIGCHLD, SIGUSR2]).map_err(StartError::Signals)?;
    tracing::info!("Listening at: http://{bound} ({} workers)", worker_config.cpus.len());
    let mut child = spawn_worker_process(&executable, &worker_config, &listeners)?;
    tracing::debug!("worker process {} started", child.id());
    // The listeners stay open until the master returns.
    let code = loop {
        let Some(sig) = signals.forever().next() else { break stop_worker_process(&mut child) };
        match sig {
            SIGCHLD => {
                if let Ok(Some(status)) = child.try_wait() {
                    break worker_exit_code(status);
                }
            }
            SIGUSR2 => {
                // Statistics are the workers' business: pass it on.
                let _ = signal::kill(Pid::from_raw(child.id() as i32), Signal::SIGUSR2);
            }
            _ => {
                tracing::info!("shutting down ({})", signal_name(sig));
                break stop_worker_process(&mut child);
            }
        }
    };
    drop(listeners);
    Ok(code)
}

/// Every connection is a descriptor of the one worker process: raise the soft limit on open
/// files to the hard limit (the worker process inherits it).
fn raise_open_files_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!("cannot raise the open files limit from {soft} to {hard}: {e}");
            }
        }
    }
}

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

/// Binds one SO_REUSEPORT listener per worker. A plain bind first checks the address is free,
/// so a second server on the same port fails instead of silently sharing its traffic.
fn bind_listeners(addr: SocketAddr, n: usize, backlog: i32) -> Result<Vec<TcpListener>, StartError> {
    let probe = TcpListener::bind(addr).map_err(|e| StartError::Bind(addr, e))?;
    let addr = probe.local_addr().map_err(|e| StartError::Bind(addr, e))?;
    drop(probe);
    (0..n)
        .map(|_| io::bind_reuseport(addr, backlog).map_err(|e| StartError::Bind(addr, e)))
        .collect()
}

fn spawn_worker_process(
    executable: &PathBuf,
    worker_config: &WorkerConfig,
    listeners: &[TcpListener],
) -> Result<Child, StartError> {
    let json = serde_json::to_string(worker_config).expect("WorkerConfig serializes");
    let fds: Vec<String> = listeners.iter().map(|l| l.as_raw_fd().to_string()).collect();
    for listener in listeners {
        io::set_inheritable(listener.as_fd(), true).map_err(StartError::Spawn)?;
    }
    let child = Command::new(executable)
        .args(["-m", "ringwsgi"])
        .env(WORKER_CONFIG_ENV, json)
        .env(WORKER_FDS_ENV, fds.join(","))
        .spawn()
        .map_err(StartError::Spawn);
    for listener in listeners {
        let _ = io::set_inheritable(listener.as_fd(), false);
    }
    child
}

fn worker_exit_code(status: ExitStatus) -> i32 {
    match status.code() {
        Some(0) => 0,
        // The worker already said why, in one line.
        Some(EXIT_BOOT_ERROR) => EXIT_BOOT_ERROR,
        Some(code) => {
            tracing::error!("the worker process exited with code {code}");
            code
        }
        None => {
            use std::os::unix::process::ExitStatusExt;
            let sig = status.signal().unwrap_or(0);
            tracing::error!("the worker process was killed by signal {sig}");
            1
        }
    }
}

/// Asks the worker process to stop and waits for it (killing it after [`STOP_TIMEOUT`]).
fn stop_worker_process(child: &mut Child) -> i32 {
    let pid = Pid::from_raw(child.id() as i32);
    let _ = signal::kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + STOP_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return worker_exit_code(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                tracing::error!("the worker process did not stop in {STOP_TIMEOUT:?}: killing it");
                let _ = child.kill();
                let _ = child.wait();
                return 1;
            }
        }
    }
}

fn signal_name(sig: i32) -> &'static str {
    Signal::try_from(sig).map(|s| s.as_str()).unwrap_or("signal")
}

// ---------------------------------------------------------------------------------------------
// Worker process

/// Messages from the worker threads (and the signal thread) to the worker process's main thread.
enum Report {
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
    init_logging(&config.log_level);
    // Die with the master (it may be SIGKILLed), and forget the hand-over variables.
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGTERM);
    let fds = std::env::var(WORKER_FDS_ENV).unwrap_or_default();
    std::env::remove_var(WORKER_CONFIG_ENV);
    std::env::remove_var(WORKER_FDS_ENV);
    let listeners: Result<Vec<TcpListener>, _> = fds
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|fd| fd.parse::<RawFd>().map_err(std::io::Error::other).and_then(io::adopt_listener))
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
    py.detach(|| supervise_threads(config, listeners))
}

fn supervise_threads(config: WorkerConfig, listeners: Vec<TcpListener>) -> i32 {
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut signals = match Signals::new([SIGTERM, SIGINT, SIGQUIT, SIGUSR2]) {
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
    let code = wait_for_threads(&rx, threads.len(), &control);
    for thread in threads {
        let _ = thread.join();
    }
    signal_handle.close();
    let _ = signal_thread.join();
    code
}

/// Waits for every thread to boot, then for a signal or a thread's unexpected end; then stops
/// all threads and waits until they have exited. Returns the process's exit code.
fn wait_for_threads(rx: &Receiver<Report>, n: usize, control: &Control) -> i32 {
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

/// The limits each worker enforces (the flags were checked by the master).
fn worker_limits(config: &WorkerConfig) -> Limits {
    let secs = |s: f64| Duration::from_secs_f64(s.max(0.001));
    Limits {
        max_body: config.limit_request_body,
        spool: SpoolSettings { threshold: config.spool_threshold, dir: config.spool_dir.clone() },
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
fn worker_thread(index: usize, listener: TcpListener, config: &WorkerConfig, control: Arc<Control>, tx: Sender<Report>) {
    let cpu = config.cpus[index];
    if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
        tracing::warn!("worker thread {index}: cannot pin to CPU {cpu}");
    }
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
    let ring = match Uring::new(listener, RING_ENTRIES) {
        Ok(r) => r,
        Err(e) => {
            interpreter.attach(|py| wsgi.release(py));
            interpreter.end();
            return fail(explain_ring_error(&e));
        }
    };
    let waker = ring.waker();
    let _ = tx.send(Report::Ready { waker: waker.clone() });
    if control.stop.load(Ordering::Acquire) {
        waker.wake();
    }
    let limits = worker_limits(config);
    let head_limits = limits.head;
    let mut worker = Worker::new(ring, wsgi, limits, control);
    if config.stats {
        worker = worker.with_stats(index, cpu);
    }
    let result = if config.threads > 1 {
        let pool = Pool::start(config.threads, interpreter.reference(), settings, head_limits, waker);
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
    let _ = tx.send(Report::Exited { index, error: result.err().map(|e| e.to_string()) });
}
