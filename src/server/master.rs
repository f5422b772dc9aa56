//! The master process: checks the flags, binds, chooses the mode, starts one worker process per
//! worker slot and supervises them (restarts the dead, replaces them on SIGHUP or when they ask,
//! stops them on SIGTERM/SIGINT/SIGQUIT), forwards SIGUSR1/SIGUSR2 and returns the exit code.
//! It never imports the app.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use nix::sys::signal::Signal;
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::iterator::Signals;

use super::children::{self, describe_exit, Child, Event};
use super::status::Status;
use super::{
    binds, reload, signal_name, systemd, StartError, EXIT_BOOT_ERROR, EXIT_SUBINTERPRETERS_REFUSED,
};
use crate::config::{self, Args, Interpreters, Mode, WorkerConfig};
use crate::logging::{self, LogConfig, LogHandle};
use crate::wsgi;

/// Time a stopping worker process gets beyond --graceful-timeout before it is killed (its own
/// drain deadline is --graceful-timeout).
const KILL_MARGIN: Duration = Duration::from_secs(5);
/// Time worker processes get to stop on SIGINT/SIGQUIT before they are killed.
const QUICK_STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// A worker process dying sooner than this after it started counts towards crash-loop backoff.
const CRASH_WINDOW: Duration = Duration::from_secs(10);
/// Restart delays in a crash loop: the first, doubling up to the last.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How long an exited worker process's status messages are waited for.
const STATUS_GRACE: Duration = Duration::from_secs(1);

/// The master: binds, starts and supervises the worker processes, returns the exit code.
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
    let graceful = config::seconds("--graceful-timeout", args.graceful_timeout)?;
    let mode = choose_mode(args.mode)?;
    if args.timeout != 0.0 {
        config::seconds("--timeout", args.timeout)?;
    }
    let spool_dir = match &args.spool_dir {
        Some(dir) => Some(
            std::path::absolute(dir)
                .map_err(|e| config::ConfigError::Path(dir.display().to_string(), e))?,
        ),
        None => None,
    };
    let listeners = binds::bind_all(&args.bind, cpus.len(), args.backlog, args.umask)?;
    binds::drop_privileges(
        args.user.as_deref(),
        args.group.as_deref(),
        args.initgroups,
        &listeners,
    )?;
    let bound = listeners.server_address();
    let worker_config = WorkerConfig {
        app: args.app.clone(),
        sys_path: config::app_sys_path(args.pythonpath.as_deref())?,
        total_workers: cpus.len(),
        first_worker: 0,
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
        graceful_timeout: args.graceful_timeout,
        timeout: args.timeout,
        max_requests: args.max_requests,
        max_requests_jitter: args.max_requests_jitter,
        stats: args.stats,
        access_logfile: config::access_logfile(
            args.access_logfile.as_deref(),
            &args.access_logformat,
        )?,
        access_logformat: args.access_logformat.clone(),
        interpreters: mode.interpreters,
        forwarded_allow_ips: args.forwarded_allow_ips.clone(),
        proxy_protocol: args.proxy_protocol,
        proxy_allow_from: args.proxy_allow_from.clone(),
        io: args.io,
    };
    let _metrics = crate::metrics::start(&args, worker_config.cpus.len())?;
    // Register before spawning so that no SIGCHLD or early SIGTERM is missed.
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGQUIT, SIGCHLD, SIGHUP, SIGUSR1, SIGUSR2])
        .map_err(StartError::Signals)?;
    let signal_handle = signals.handle();
    let (events, rx) = crossbeam_channel::unbounded();
    let signal_events = events.clone();
    let signal_thread = std::thread::spawn(move || {
        for sig in signals.forever() {
            let _ = signal_events.send(Event::Signal(sig));
        }
    });
    listeners.log(worker_config.cpus.len());
    if args.reload {
        reload::watch(worker_config.sys_path.iter().map(PathBuf::from).collect());
    }
    if let Some(line) = &mode.announce {
        tracing::info!("{line}");
    }
    let mut master = Master {
        executable,
        slots: slots(&worker_config.cpus, mode.interpreters),
        config: worker_config,
        listeners,
        children: Vec::new(),
        serial: 0,
        events,
        graceful,
        auto: mode.auto,
        announced: mode.announce.is_some(),
        shutdown: None,
        log,
    };
    let result = master.run(&rx);
    signal_handle.close();
    let _ = signal_thread.join();
    // The listeners stay open until here, the master's end.
    drop(master);
    result
}

/// The mode chosen from `--mode` and the Python version.
struct ChosenMode {
    interpreters: Interpreters,
    /// Subinterpreters for now; processes if an extension module refuses them.
    auto: bool,
    /// The `mode: …` line, when it is known before any worker starts.
    announce: Option<String>,
}

fn choose_mode(mode: Mode) -> Result<ChosenMode, StartError> {
    let supported = wsgi::subinterpreters_supported();
    Ok(match mode {
        Mode::Process => ChosenMode {
            interpreters: Interpreters::Main,
            auto: false,
            announce: Some("mode: process (--mode process)".to_owned()),
        },
        Mode::Subinterpreter if supported => ChosenMode {
            interpreters: Interpreters::Sub,
            auto: false,
            announce: Some("mode: subinterpreter (--mode subinterpreter)".to_owned()),
        },
        Mode::Subinterpreter => {
            return Err(StartError::NoSubinterpreters(wsgi::python_version()));
        }
        Mode::Auto if supported => ChosenMode {
            interpreters: Interpreters::Sub,
            auto: true,
            announce: None,
        },
        Mode::Auto => {
            let version = wsgi::python_version();
            let minor = version
                .rsplit_once('.')
                .map_or(version.as_str(), |(v, _)| v);
            ChosenMode {
                interpreters: Interpreters::Main,
                auto: false,
                announce: Some(format!(
                    "mode: process (Python {minor}: own-GIL subinterpreters need 3.13+)"
                )),
            }
        }
    })
}

/// The CPUs and listeners one worker process gets (listeners are indexes into the master's,
/// which are bound one per entry of `cpus`).
struct Slot {
    cpus: Vec<usize>,
    listeners: Vec<usize>,
    /// Deaths in a row that came soon after start (crash-loop backoff).
    quick_deaths: u32,
    /// When a replacement is due (after a backoff delay).
    restart_at: Option<Instant>,
    /// A process of this slot was ready once.
    served: bool,
}

/// One slot with every CPU (subinterpreters: one process, a thread per CPU), or one slot per
/// CPU (processes).
fn slots(cpus: &[usize], interpreters: Interpreters) -> Vec<Slot> {
    let slot = |range: std::ops::Range<usize>| Slot {
        cpus: cpus[range.clone()].to_vec(),
        listeners: range.collect(),
        quick_deaths: 0,
        restart_at: None,
        served: false,
    };
    match interpreters {
        Interpreters::Sub => vec![slot(0..cpus.len())],
        Interpreters::Main => (0..cpus.len()).map(|i| slot(i..i + 1)).collect(),
    }
}

/// Stopping every worker process: with which code the master exits, and when the processes
/// still running are killed.
struct Shutdown {
    code: i32,
    kill_at: Instant,
}

struct Master<'a> {
    executable: PathBuf,
    /// The configuration every worker process gets, but for its slot's CPUs.
    config: WorkerConfig,
    listeners: binds::Listeners,
    slots: Vec<Slot>,
    children: Vec<Child>,
    serial: u64,
    events: Sender<Event>,
    graceful: Duration,
    /// `--mode auto` still in subinterpreter mode: a refusal switches to processes.
    auto: bool,
    /// The `mode: …` line was logged.
    announced: bool,
    shutdown: Option<Shutdown>,
    log: &'a LogHandle,
}

impl Master<'_> {
    fn run(&mut self, rx: &Receiver<Event>) -> Result<i32, StartError> {
        for slot in 0..self.slots.len() {
            self.spawn(slot)?;
        }
        loop {
            let event = match self.next_deadline() {
                Some(at) => rx.recv_timeout(at.saturating_duration_since(Instant::now())),
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match event {
                Ok(event) => self.handle(event)?,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(1),
            }
            self.on_time()?;
            if let Some(shutdown) = &self.shutdown {
                if self.children.is_empty() {
                    return Ok(shutdown.code);
                }
            }
        }
    }

    fn spawn(&mut self, slot: usize) -> Result<(), StartError> {
        let s = &mut self.slots[slot];
        s.restart_at = None;
        let mut config = self.config.clone();
        config.cpus = s.cpus.clone();
        config.first_worker = s.listeners[0];
        let listeners = self.listeners.hand_over(&s.listeners);
        self.serial += 1;
        let child = children::spawn(
            &self.executable,
            &config,
            &listeners,
            slot,
            self.serial,
            &self.events,
        )?;
        tracing::debug!(
            "worker process {} started (slot {slot}, CPUs {:?})",
            child.pid(),
            config.cpus
        );
        self.children.push(child);
        Ok(())
    }

    fn handle(&mut self, event: Event) -> Result<(), StartError> {
        match event {
            Event::Signal(SIGCHLD) => self.reap(),
            Event::Signal(SIGHUP) if self.shutdown.is_none() => {
                tracing::info!("reloading (SIGHUP): starting new worker processes");
                for slot in 0..self.slots.len() {
                    self.spawn(slot)?;
                }
            }
            Event::Signal(sig @ (SIGUSR1 | SIGUSR2)) => {
                if sig == SIGUSR1 {
                    self.log.reopen();
                }
                // The workers reopen their log file too, and print statistics: pass it on.
                let sig = Signal::try_from(sig).expect("a known signal");
                self.children.iter().for_each(|c| c.signal(sig));
            }
            Event::Signal(SIGTERM) => {
                tracing::info!("shutting down (SIGTERM)");
                self.stop_all(Signal::SIGTERM, self.graceful + KILL_MARGIN, 0);
            }
            Event::Signal(sig @ (SIGINT | SIGQUIT)) => {
                tracing::info!("shutting down ({})", signal_name(sig));
                let sig = Signal::try_from(sig).expect("a known signal");
                self.stop_all(sig, QUICK_STOP_TIMEOUT, 0);
            }
            Event::Signal(_) => {}
            Event::Status { pid, status } => self.on_status(pid, status),
            Event::StatusClosed { pid } => {
                if let Some(child) = self.children.iter_mut().find(|c| c.pid() == pid) {
                    child.status_closed = true;
                }
            }
        }
        Ok(())
    }

    fn on_status(&mut self, pid: u32, status: Status) {
        let Some(child) = self.children.iter_mut().find(|c| c.pid() == pid) else {
            return;
        };
        let (slot, serial) = (child.slot, child.serial);
        match status {
            Status::Ready => {
                child.ready = true;
                self.slots[slot].served = true;
                tracing::debug!("worker process {pid} (slot {slot}) ready");
                systemd::notify("READY=1");
                if !self.announced {
                    self.announced = true;
                    tracing::info!("mode: subinterpreter");
                }
                // The replacement serves: the processes it replaces drain and stop.
                let deadline = Instant::now() + self.graceful + KILL_MARGIN;
                for old in &mut self.children {
                    if old.slot == slot && old.serial < serial && old.stopping.is_none() {
                        old.signal(Signal::SIGTERM);
                        old.stopping = Some(deadline);
                    }
                }
            }
            Status::Replace(reason) => {
                let replacing = self
                    .children
                    .iter()
                    .any(|c| c.slot == slot && c.serial > serial);
                if self.shutdown.is_none() && !replacing {
                    tracing::info!("replacing worker process {pid} (slot {slot}): {reason}");
                    crate::metrics::worker_restarted();
                    if let Err(e) = self.spawn(slot) {
                        tracing::error!("{e}");
                    }
                }
            }
            Status::Refused(package) => child.refused_by = Some(package),
        }
    }

    /// Notes which worker processes have exited (their exit is handled in [`Master::on_time`]).
    fn reap(&mut self) {
        for child in &mut self.children {
            if child.exited.is_none() {
                if let Ok(Some(status)) = child.process.try_wait() {
                    child.exited = Some((status, Instant::now()));
                }
            }
        }
    }

    /// The next time something is due: a handled exit, a kill, a restart.
    fn next_deadline(&self) -> Option<Instant> {
        let exits = self
            .children
            .iter()
            .filter_map(|c| c.exited.map(|(_, at)| at + STATUS_GRACE));
        let kills = self.children.iter().filter_map(|c| self.kill_at(c));
        let restarts = self.slots.iter().filter_map(|s| s.restart_at);
        exits.chain(kills).chain(restarts).min()
    }

    /// When a running worker process that was asked to stop gets killed.
    fn kill_at(&self, child: &Child) -> Option<Instant> {
        if child.killed || child.exited.is_some() {
            return None;
        }
        let shutdown = self.shutdown.as_ref().map(|s| s.kill_at);
        child.stopping.into_iter().chain(shutdown).min()
    }

    /// Handles exits, kills the processes past their grace period, starts due restarts.
    fn on_time(&mut self) -> Result<(), StartError> {
        let now = Instant::now();
        let mut i = 0;
        while i < self.children.len() {
            let child = &self.children[i];
            match child.exited {
                Some((status, at)) if child.status_closed || now >= at + STATUS_GRACE => {
                    let child = self.children.remove(i);
                    self.on_exit(child, status)?;
                    continue;
                }
                Some(_) => {}
                None if self.kill_at(child).is_some_and(|at| now >= at) => {
                    tracing::error!(
                        "worker process {} (slot {}) did not stop in time: killing it",
                        child.pid(),
                        child.slot
                    );
                    child.signal(Signal::SIGKILL);
                    self.children[i].killed = true;
                    if let Some(shutdown) = &mut self.shutdown {
                        shutdown.code = shutdown.code.max(1);
                    }
                }
                None => {}
            }
            i += 1;
        }
        if self.shutdown.is_none() {
            let due: Vec<usize> = (0..self.slots.len())
                .filter(|&s| self.slots[s].restart_at.is_some_and(|at| now >= at))
                .collect();
            for slot in due {
                self.spawn(slot)?;
            }
        }
        Ok(())
    }

    fn on_exit(&mut self, child: Child, status: ExitStatus) -> Result<(), StartError> {
        let (pid, slot) = (child.pid(), child.slot);
        let how = describe_exit(status);
        if let Some(shutdown) = &mut self.shutdown {
            tracing::debug!("worker process {pid} (slot {slot}) {how}");
            if status.code() != Some(0) && shutdown.code == 0 {
                shutdown.code = match status.code() {
                    Some(EXIT_BOOT_ERROR) => EXIT_BOOT_ERROR,
                    _ => 1,
                };
                if status.code() != Some(EXIT_BOOT_ERROR) {
                    tracing::error!("worker process {pid} (slot {slot}) {how}");
                }
            }
            return Ok(());
        }
        if child.stopping.is_some() {
            tracing::debug!("replaced worker process {pid} (slot {slot}) {how}");
            return Ok(());
        }
        if status.code() == Some(EXIT_SUBINTERPRETERS_REFUSED) {
            let package = child
                .refused_by
                .unwrap_or_else(|| "an extension module".to_owned());
            return self.on_refusal(&package);
        }
        // Another process of this slot serves, or is starting: it takes over.
        let others = self
            .children
            .iter()
            .any(|c| c.slot == slot && c.stopping.is_none());
        if !child.ready {
            let serving = self
                .children
                .iter()
                .any(|c| c.slot == slot && c.ready && c.stopping.is_none());
            if serving {
                tracing::error!(
                    "a new worker process for slot {slot} {how} before it was ready: the old \
                     one goes on serving"
                );
                return Ok(());
            }
            // The app cannot load, or the slot never served: a boot error, not a crash to
            // retry. A replacement killed by a signal before its `ready` reached the master
            // (it may already serve) is a crash like any other.
            let boot_error = status.code() == Some(EXIT_BOOT_ERROR);
            if boot_error || !self.slots[slot].served {
                if !boot_error {
                    // A boot error was already explained by the worker; anything else was not.
                    tracing::error!("worker process {pid} (slot {slot}) {how} before it was ready");
                }
                self.stop_all(
                    Signal::SIGTERM,
                    self.graceful + KILL_MARGIN,
                    EXIT_BOOT_ERROR,
                );
                return Ok(());
            }
        }
        if others {
            tracing::error!("worker process {pid} (slot {slot}) {how}");
            return Ok(());
        }
        let s = &mut self.slots[slot];
        if child.started.elapsed() < CRASH_WINDOW {
            s.quick_deaths += 1;
        } else {
            s.quick_deaths = 0;
        }
        let delay = restart_delay(s.quick_deaths);
        crate::metrics::worker_restarted();
        tracing::error!(
            "worker process {pid} (slot {slot}, CPUs {:?}) {how}: restarting it{}",
            s.cpus,
            if delay.is_zero() {
                String::new()
            } else {
                format!(" in {delay:?}")
            }
        );
        if delay.is_zero() {
            self.spawn(slot)
        } else {
            s.restart_at = Some(Instant::now() + delay);
            Ok(())
        }
    }

    /// An extension module refused subinterpreters: fall back to processes under `--mode
    /// auto`, else a boot error that says what to do.
    fn on_refusal(&mut self, package: &str) -> Result<(), StartError> {
        if !self.auto {
            tracing::error!("{package} does not support subinterpreters: use --mode process");
            self.stop_all(
                Signal::SIGTERM,
                self.graceful + KILL_MARGIN,
                EXIT_BOOT_ERROR,
            );
            return Ok(());
        }
        self.auto = false;
        self.announced = true;
        tracing::info!("mode: process ({package} does not support subinterpreters)");
        for child in &mut self.children {
            child.signal(Signal::SIGTERM);
            child.stopping = Some(Instant::now() + self.graceful + KILL_MARGIN);
        }
        self.config.interpreters = Interpreters::Main;
        self.slots = slots(&self.config.cpus, Interpreters::Main);
        for slot in 0..self.slots.len() {
            self.spawn(slot)?;
        }
        Ok(())
    }

    /// Sends `sig` to every worker process; those still running after `wait` are killed. The
    /// master then exits with `code` (or worse, if a worker process fails).
    fn stop_all(&mut self, sig: Signal, wait: Duration, code: i32) {
        let kill_at = Instant::now() + wait;
        match &mut self.shutdown {
            Some(shutdown) => {
                shutdown.kill_at = shutdown.kill_at.min(kill_at);
                shutdown.code = shutdown.code.max(code);
            }
            None => self.shutdown = Some(Shutdown { code, kill_at }),
        }
        for slot in &mut self.slots {
            slot.restart_at = None;
        }
        self.children.iter().for_each(|c| c.signal(sig));
    }
}

/// The delay before a slot's process is restarted after `quick_deaths` deaths in a row soon
/// after start: none for the first, then [`BACKOFF_FIRST`] doubling up to [`BACKOFF_MAX`].
fn restart_delay(quick_deaths: u32) -> Duration {
    match quick_deaths {
        0 | 1 => Duration::ZERO,
        n => BACKOFF_FIRST
            .saturating_mul(1 << (n - 2).min(5))
            .min(BACKOFF_MAX),
    }
}

/// Every connection is a descriptor of a worker process: raise the soft limit on open files to
/// the hard limit (worker processes inherit it).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_loop_backoff() {
        let delays: Vec<u64> = (0..9).map(|n| restart_delay(n).as_secs()).collect();
        assert_eq!(delays, [0, 0, 1, 2, 4, 8, 16, 30, 30]);
    }

    #[test]
    fn slots_per_mode() {
        let sub = slots(&[0, 1, 0], Interpreters::Sub);
        assert_eq!(sub.len(), 1);
        assert_eq!(
            (sub[0].cpus.clone(), sub[0].listeners.clone()),
            (vec![0, 1, 0], vec![0, 1, 2])
        );
        let main = slots(&[0, 1, 0], Interpreters::Main);
        let got: Vec<_> = main
            .iter()
            .map(|s| (s.cpus.clone(), s.listeners.clone()))
            .collect();
        assert_eq!(
            got,
            vec![(vec![0], vec![0]), (vec![1], vec![1]), (vec![0], vec![2])]
        );
    }
}
