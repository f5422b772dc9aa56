//! The worker process's status line to the master: one pipe per worker process, whose write end
//! the worker inherits (its fd number in `RINGWSGI_STATUS_FD`). A message is one line of text:
//!
//! - `ready`: every worker thread of the process serves (the app is loaded, the ring is up);
//! - `replace <reason>`: start a replacement and, once it is ready, stop this process
//!   gracefully (--max-requests reached, a call stuck past --timeout + --graceful-timeout);
//! - `refused <package>`: the app cannot load in a subinterpreter because an extension module of
//!   this package refuses them (the process then exits; the master may fall back to processes).
//!
//! Signals go the other way (master to worker): SIGTERM graceful stop, SIGINT/SIGQUIT quick
//! stop, SIGUSR1 reopen log files, SIGUSR2 print statistics.

use std::fs::File;
use std::io::Write;
use std::os::fd::RawFd;
use std::sync::Mutex;

/// Environment variable with the fd number of the status pipe's write end (worker side).
pub const STATUS_FD_ENV: &str = "RINGWSGI_STATUS_FD";

/// A message from a worker process to the master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Ready,
    Replace(String),
    Refused(String),
}

impl Status {
    /// The message as its line (with the newline).
    pub fn to_line(&self) -> String {
        match self {
            Status::Ready => "ready\n".to_owned(),
            Status::Replace(reason) => format!("replace {}\n", reason.replace('\n', " ")),
            Status::Refused(package) => format!("refused {}\n", package.replace('\n', " ")),
        }
    }

    /// Parses one line (without its newline); None for an unknown message.
    pub fn parse(line: &str) -> Option<Status> {
        match line.split_once(' ') {
            None if line == "ready" => Some(Status::Ready),
            Some(("replace", reason)) => Some(Status::Replace(reason.to_owned())),
            Some(("refused", package)) => Some(Status::Refused(package.to_owned())),
            _ => None,
        }
    }
}

/// The worker side's pipe, taken from the environment once by [`adopt`].
static PIPE: Mutex<Option<File>> = Mutex::new(None);

/// Takes over the status pipe named in the environment (worker process start-up, before any
/// thread is spawned) and removes the variable. Without one (a worker started by hand) the
/// messages are dropped.
pub fn adopt() {
    let fd = std::env::var(STATUS_FD_ENV)
        .ok()
        .and_then(|s| s.parse::<RawFd>().ok());
    std::env::remove_var(STATUS_FD_ENV);
    let Some(fd) = fd.filter(|fd| *fd > 2) else {
        return;
    };
    // The fd was inherited for exactly this purpose and nothing else in the process owns it.
    match crate::io::adopt_fd(fd) {
        Ok(fd) => *PIPE.lock().unwrap_or_else(|e| e.into_inner()) = Some(File::from(fd)),
        Err(e) => tracing::warn!("status pipe fd {fd}: {e}"),
    }
}

/// Sends `status` to the master (a short blocking write on a pipe the master always drains;
/// never called on the request path). Errors are ignored: a master that is gone cannot act.
pub fn notify(status: &Status) {
    if let Some(file) = PIPE.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        let _ = file.write_all(status.to_line().as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        for status in [
            Status::Ready,
            Status::Replace("max requests (1000) reached".into()),
            Status::Refused("orjson".into()),
        ] {
            let line = status.to_line();
            assert_eq!(Status::parse(line.trim_end_matches('\n')), Some(status));
        }
        assert_eq!(Status::parse("bogus"), None);
    }
}
