//! The master process: checks the flags, binds, starts the worker process, forwards signals and
//! returns the exit code. It never imports the app.

use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use signal_hook::consts::{SIGCHLD, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::iterator::Signals;

use super::{binds, signal_name, StartError, EXIT_BOOT_ERROR, WORKER_CONFIG_ENV, WORKER_FDS_ENV};
use crate::config::{self, Args, WorkerConfig};
use crate::io;
use crate::logging::{self, LogConfig, LogHandle};

/// How long a stopping worker process gets before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The master: binds, starts the worker process, forwards signals, returns the exit code.
pub fn run_master(args: Args, executable: PathBuf) -> i32 {
    // Resolved before --chdir: a relative log file is relative to where ringwsgi was started.
    let log_config = match args.log_config() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {err}");
            return 1;
        }
    };
    let log = match logging::init_logging(&log_config) {
        Ok(log) => log,
        Err(err) => {
            eprintln!("error: {err}");
            return 1;
        }
    };
    match master(args, executable, log_config, &log) {
        Ok(code) => code,
        Err(err) => {
            tracing::error!("{err}");
            1
        }
    }
}

fn master(
    args: Args,
    executable: PathBuf,
    log_config: LogConfig,
    log: &LogHandle,
) -> Result<i32, StartError> {
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
        Some(dir) => Some(
            std::path::absolute(dir)
                .map_err(|e| config::ConfigError::Path(dir.display().to_string(), e))?,
        ),
        None => None,
    };
    let listeners = binds::bind_listeners(addr, cpus.len(), args.backlog)?;
    let bound = listeners[0]
        .local_addr()
        .map_err(|e| StartError::Bind(addr, e))?;
    let worker_config = WorkerConfig {
        app: args.app.clone(),
        sys_path: config::app_sys_path(args.pythonpath.as_deref())?,
        cpus,
        bound,
        script_name: std::env::var("SCRIPT_NAME").unwrap_or_default(),
        log: log_config,
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
        io: args.io,
    };
    // Register before spawning so that no SIGCHLD or early SIGTERM is missed.
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGQUIT, SIGCHLD, SIGUSR1, SIGUSR2])
        .map_err(StartError::Signals)?;
    tracing::info!(
        "Listening at: http://{bound} ({} workers)",
        worker_config.cpus.len()
    );
    let mut child = spawn_worker_process(&executable, &worker_config, &listeners)?;
    tracing::debug!("worker process {} started", child.id());
    // The listeners stay open until the master returns.
    let code = loop {
        let Some(sig) = signals.forever().next() else {
            break stop_worker_process(&mut child);
        };
        match sig {
            SIGCHLD => {
                if let Ok(Some(status)) = child.try_wait() {
                    break worker_exit_code(status);
                }
            }
            SIGUSR1 => {
                log.reopen();
                let _ = signal::kill(Pid::from_raw(child.id() as i32), Signal::SIGUSR1);
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

fn spawn_worker_process(
    executable: &PathBuf,
    worker_config: &WorkerConfig,
    listeners: &[TcpListener],
) -> Result<Child, StartError> {
    let json = serde_json::to_string(worker_config).expect("WorkerConfig serializes");
    let fds: Vec<String> = listeners
        .iter()
        .map(|l| l.as_raw_fd().to_string())
        .collect();
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
