//! The per-worker statistics block (`--stats`): where a request's time goes, named after the
//! WSGI call flow, how large the batches are, and how many kernel entries a request costs.
//!
//! Each worker thread owns its block and is its only writer: nothing is shared between workers
//! and no atomic is touched on the request path. Timing is only taken when `--stats` is on.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::wsgi::CallTimes;

/// Upper bounds of the batch-size buckets (requests answered in one round); the last is open.
const BATCH_BUCKETS: [usize; 7] = [1, 2, 4, 8, 16, 32, 64];

/// One worker's counters.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub requests: u64,
    pub rounds: u64,
    /// Receive and parse: from the round's start to the request handed to the app.
    pub parse: Duration,
    /// Build environ, app call until it returns (start_response included), body iteration
    /// and encoding.
    pub call: CallTimes,
    /// Send: response queued until the transport reported it written.
    pub send: Duration,
    pub sends: u64,
    /// Rounds by requests answered in them: `batches[i]` counts batches of at most
    /// `BATCH_BUCKETS[i]` (and more than the bucket before); the last counts larger ones.
    pub batches: [u64; BATCH_BUCKETS.len() + 1],
    /// Kernel entries (io_uring_enter) so far.
    pub enters: u64,
}

impl Stats {
    /// Counts a round that answered `requests` requests.
    pub fn round(&mut self, requests: usize) {
        self.rounds += 1;
        if requests > 0 {
            let bucket = BATCH_BUCKETS
                .iter()
                .position(|&max| requests <= max)
                .unwrap_or(BATCH_BUCKETS.len());
            self.batches[bucket] += 1;
        }
    }

    /// Adds the time since `queued` to the send stage.
    pub fn sent(&mut self, queued: Instant, now: Instant) {
        self.send += now.saturating_duration_since(queued);
        self.sends += 1;
    }

    /// The block as text, for stderr.
    pub fn report(&self, worker: usize, cpu: usize) -> String {
        let per = |d: Duration| {
            if self.requests == 0 {
                0.0
            } else {
                d.as_secs_f64() * 1e6 / self.requests as f64
            }
        };
        let mut out = String::new();
        let _ = writeln!(
            out,
            "ringwsgi stats: worker {worker} (CPU {cpu}): {} requests in {} rounds",
            self.requests, self.rounds
        );
        let _ = writeln!(
            out,
            "  {:<40} {:>12} {:>14}",
            "stage", "total ms", "per request µs"
        );
        let stages = [
            ("receive and parse", self.parse),
            ("build environ", self.call.environ),
            ("app call (until it returns)", self.call.app),
            ("body iteration and encoding", self.call.body),
        ];
        for (name, d) in stages {
            let _ = writeln!(
                out,
                "  {name:<40} {:>12.1} {:>14.2}",
                d.as_secs_f64() * 1e3,
                per(d)
            );
        }
        let send_each = if self.sends == 0 {
            0.0
        } else {
            self.send.as_secs_f64() * 1e6 / self.sends as f64
        };
        let _ = writeln!(
            out,
            "  {:<40} {:>12.1} {:>14.2}",
            "send (queued until written, per send)",
            self.send.as_secs_f64() * 1e3,
            send_each
        );
        let mut batches = String::new();
        let mut low = 1;
        for (i, count) in self.batches.iter().enumerate() {
            let label = match BATCH_BUCKETS.get(i) {
                Some(&high) if high == low => format!("{high}"),
                Some(&high) => format!("{low}-{high}"),
                None => format!(">{}", BATCH_BUCKETS[BATCH_BUCKETS.len() - 1]),
            };
            let _ = write!(batches, " {label}: {count}");
            low = BATCH_BUCKETS.get(i).map_or(low, |h| h + 1);
        }
        let _ = writeln!(out, "  batch sizes (rounds by requests answered):{batches}");
        let per_request = if self.requests == 0 {
            0.0
        } else {
            self.enters as f64 / self.requests as f64
        };
        let _ = write!(
            out,
            "  io_uring submissions (enters): {} ({per_request:.3} per request)",
            self.enters
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_fall_in_their_buckets() {
        let mut stats = Stats::default();
        for n in [0, 1, 2, 3, 4, 16, 17, 100] {
            stats.round(n);
        }
        assert_eq!(stats.rounds, 8);
        assert_eq!(stats.batches, [1, 1, 2, 0, 1, 1, 0, 1]);
        let report = stats.report(0, 1);
        assert!(report.contains("1: 1 2: 1 3-4: 2"), "{report}");
        assert!(report.contains(">64: 1"), "{report}");
    }
}
