//! Per-connection deadlines, checked about once a second (at the transport's `Tick`): a slow or
//! silent client costs a timestamp in its connection state, never a timer of its own.

use std::time::{Duration, Instant};

/// The time limits of `--header-timeout`, `--keep-alive`, `--body-timeout`, `--write-timeout`,
/// `--graceful-timeout`.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// From the first byte of a request head to its end.
    pub header: Duration,
    /// An idle connection between requests.
    pub keep_alive: Duration,
    /// A request body without progress.
    pub body: Duration,
    /// A response without progress (the client does not read).
    pub write: Duration,
    /// A graceful stop, from its signal until what is left is aborted.
    pub graceful: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            header: Duration::from_secs(10),
            keep_alive: Duration::from_secs(5),
            body: Duration::from_secs(30),
            write: Duration::from_secs(30),
            graceful: Duration::from_secs(30),
        }
    }
}

/// What a connection is waiting for, as far as deadlines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// The app is working on its request: no deadline here.
    App,
    /// Response bytes are queued, or a streaming body is being sent.
    Write,
    /// A request body is arriving.
    Body,
    /// A request head is arriving.
    Head,
    /// Nothing: between requests.
    Idle,
}

/// Which deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// Answer 408 and close.
    Head,
    /// Close quietly.
    Idle,
    /// Close; the app is not called.
    Body,
    /// Close at once (abandoning the response).
    Write,
}

/// The timestamps a connection keeps for its deadlines.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Last progress: accepted, bytes received, output drained or shrinking.
    pub activity: Instant,
    /// When the first byte of the request head being received arrived.
    pub head_started: Option<Instant>,
    /// Output still unsent at the last check (its shrinking counts as progress).
    pub last_pending: usize,
}

impl Clock {
    pub fn new(now: Instant) -> Self {
        Clock {
            activity: now,
            head_started: None,
            last_pending: 0,
        }
    }

    /// Checks the deadline of what the connection is waiting for; `pending` is its unsent output.
    pub fn check(
        &mut self,
        waiting: Waiting,
        pending: usize,
        now: Instant,
        limits: &Timeouts,
    ) -> Option<Expired> {
        if pending < self.last_pending {
            self.activity = now;
        }
        self.last_pending = pending;
        let idle_for = now.saturating_duration_since(self.activity);
        match waiting {
            Waiting::App => None,
            Waiting::Write => (idle_for > limits.write).then_some(Expired::Write),
            Waiting::Body => (idle_for > limits.body).then_some(Expired::Body),
            Waiting::Head => {
                let started = self.head_started.unwrap_or(self.activity);
                (now.saturating_duration_since(started) > limits.header).then_some(Expired::Head)
            }
            Waiting::Idle => (idle_for > limits.keep_alive).then_some(Expired::Idle),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Timeouts {
        Timeouts {
            header: Duration::from_secs(10),
            keep_alive: Duration::from_secs(5),
            body: Duration::from_secs(30),
            write: Duration::from_secs(30),
            graceful: Duration::from_secs(30),
        }
    }

    #[test]
    fn each_wait_has_its_deadline() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut clock = Clock::new(t0);
        assert_eq!(clock.check(Waiting::Idle, 0, t0 + s(4), &limits()), None);
        assert_eq!(
            clock.check(Waiting::Idle, 0, t0 + s(6), &limits()),
            Some(Expired::Idle)
        );
        assert_eq!(clock.check(Waiting::App, 0, t0 + s(600), &limits()), None);
        assert_eq!(
            clock.check(Waiting::Body, 0, t0 + s(31), &limits()),
            Some(Expired::Body)
        );
        clock.head_started = Some(t0 + s(20));
        assert_eq!(clock.check(Waiting::Head, 0, t0 + s(29), &limits()), None);
        assert_eq!(
            clock.check(Waiting::Head, 0, t0 + s(31), &limits()),
            Some(Expired::Head)
        );
    }

    #[test]
    fn a_draining_output_is_progress() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut clock = Clock::new(t0);
        assert_eq!(
            clock.check(Waiting::Write, 1000, t0 + s(20), &limits()),
            None
        );
        // Shrinking output resets the write deadline; a stuck one does not.
        assert_eq!(
            clock.check(Waiting::Write, 500, t0 + s(40), &limits()),
            None
        );
        assert_eq!(
            clock.check(Waiting::Write, 500, t0 + s(69), &limits()),
            None
        );
        assert_eq!(
            clock.check(Waiting::Write, 500, t0 + s(71), &limits()),
            Some(Expired::Write)
        );
    }
}
