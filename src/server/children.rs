//! The master's side of its worker processes: starting one for a worker slot (it inherits the
//! slot's listeners and the write end of a status pipe), reading its status messages on a
//! thread of their own, and saying how it ended.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::time::Instant;

use crossbeam_channel::Sender;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use super::binds::HandOver;
use super::status::{Status, STATUS_FD_ENV};
use super::{signal_name, StartError, WORKER_CONFIG_ENV, WORKER_FDS_ENV};
use crate::config::WorkerConfig;
use crate::io;

/// What the master's main loop waits for.
pub(super) enum Event {
    Signal(i32),
    Status {
        pid: u32,
        status: Status,
    },
    /// The status pipe of this worker process reached its end (the process is gone).
    StatusClosed {
        pid: u32,
    },
}

/// One worker process, as the master tracks it.
pub(super) struct Child {
    pub process: std::process::Child,
    pub slot: usize,
    /// Order of starting: a newer child of the same slot replaces an older one.
    pub serial: u64,
    pub started: Instant,
    /// It said `ready`: all its threads serve.
    pub ready: bool,
    /// When it is killed, if the master asked it to stop.
    pub stopping: Option<Instant>,
    /// It was sent SIGKILL.
    pub killed: bool,
    /// The package that refused subinterpreters, when it said so.
    pub refused_by: Option<String>,
    /// How it ended and when the master noticed; its exit is handled once its status pipe is
    /// closed too (so that no message it sent is overtaken), or shortly after.
    pub exited: Option<(ExitStatus, Instant)>,
    pub status_closed: bool,
}

impl Child {
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    pub fn signal(&self, sig: Signal) {
        let _ = signal::kill(Pid::from_raw(self.pid() as i32), sig);
    }
}

/// Starts a worker process for `config`, passing it `listeners` and a status pipe whose
/// messages arrive as [`Event::Status`] on `events`.
pub(super) fn spawn(
    executable: &Path,
    config: &WorkerConfig,
    listeners: &HandOver<'_>,
    slot: usize,
    serial: u64,
    events: &Sender<Event>,
) -> Result<Child, StartError> {
    let json = serde_json::to_string(config).expect("WorkerConfig serializes");
    let (reader, writer) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| StartError::Spawn(e.into()))?;
    // Everything the master opens is close-on-exec; only this child's own descriptors are made
    // inheritable, for the time of this spawn (the master spawns from one thread only).
    let inherited: Vec<_> = listeners
        .fds
        .iter()
        .copied()
        .chain([writer.as_fd()])
        .collect();
    let spawned = inherited
        .iter()
        .try_for_each(|fd| io::set_inheritable(*fd, true))
        .and_then(|()| {
            Command::new(executable)
                .args(["-m", "ringwsgi"])
                .env(WORKER_CONFIG_ENV, json)
                .env(WORKER_FDS_ENV, &listeners.env)
                .env(STATUS_FD_ENV, writer.as_raw_fd().to_string())
                .spawn()
        });
    for fd in &inherited {
        let _ = io::set_inheritable(*fd, false);
    }
    let process = spawned.map_err(StartError::Spawn)?;
    drop(writer);
    let pid = process.id();
    let events = events.clone();
    std::thread::Builder::new()
        .name(format!("ringwsgi-status-{pid}"))
        .spawn(move || {
            for line in BufReader::new(File::from(reader)).lines() {
                let Ok(line) = line else { break };
                match Status::parse(&line) {
                    Some(status) => {
                        let _ = events.send(Event::Status { pid, status });
                    }
                    None => tracing::warn!("worker process {pid} sent an unknown status: {line}"),
                }
            }
            let _ = events.send(Event::StatusClosed { pid });
        })
        .map_err(StartError::Spawn)?;
    Ok(Child {
        process,
        slot,
        serial,
        started: Instant::now(),
        ready: false,
        stopping: None,
        killed: false,
        refused_by: None,
        exited: None,
        status_closed: false,
    })
}

/// How a worker process ended, for the log ("exited with code 1", "was killed by SIGKILL").
pub(super) fn describe_exit(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(sig)) => {
            let core = if status.core_dumped() {
                " (core dumped)"
            } else {
                ""
            };
            format!("was killed by {}{core}", signal_name(sig))
        }
        (None, None) => "ended".to_owned(),
    }
}
