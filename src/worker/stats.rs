//! The per-worker statistics block (`--stats`, `--metrics-bind`): requests by method and status
//! class, request and queue time histograms, where a request's time goes (named after the WSGI
//! call flow), how large the batches are, how many kernel entries a request costs, and the open
//! connections and requests in flight.
//!
//! Each worker thread owns one slot of the shared memory the master created
//! ([`crate::metrics`]) and is its only writer: counters are advanced by a relaxed load and a
//! relaxed store (plain moves, no read-modify-write, no lock), and the master reads them
//! whenever it is scraped. A replacement worker continues its slot's counters, so they only
//! ever grow. Timing is only taken when the block exists.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::io::SharedMemory;
use crate::wsgi::CallTimes;

/// Methods counted by name; the last label stands for every other method.
pub const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other",
];
/// Status classes (1xx to 5xx).
pub const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// Upper bounds of the time histograms' buckets, in seconds; one more bucket holds the rest.
pub const TIME_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];
/// Upper bounds of the batch-size buckets (requests answered in one round); one more bucket
/// holds larger batches.
pub const BATCH_BUCKETS: [usize; 7] = [1, 2, 4, 8, 16, 32, 64];

/// Where each counter lives in a slot, in words.
pub mod word {
    use super::{BATCH_BUCKETS, CLASSES, METHODS, TIME_BUCKETS};

    /// Requests answered, `[method][class]`.
    pub const REQUESTS: usize = 0;
    /// Request time (the round that completed the request started until the app's call
    /// returned): one count per bucket (not cumulative), then the sum in nanoseconds.
    pub const DURATION: usize = REQUESTS + METHODS.len() * CLASSES.len();
    pub const DURATION_SUM_NS: usize = DURATION + TIME_BUCKETS.len() + 1;
    /// Queue time (the round that completed the request started until the app was called).
    pub const QUEUE: usize = DURATION_SUM_NS + 1;
    pub const QUEUE_SUM_NS: usize = QUEUE + TIME_BUCKETS.len() + 1;
    /// Rounds by requests answered in them, one count per bucket.
    pub const BATCHES: usize = QUEUE_SUM_NS + 1;
    pub const ROUNDS: usize = BATCHES + BATCH_BUCKETS.len() + 1;
    /// io_uring_enter calls.
    pub const ENTERS: usize = ROUNDS + 1;
    /// Stage times in nanoseconds: receive and parse, the whole call (environ, app, body), and
    /// (with `--stats` only, as it costs more clock reads) its parts: build environ, app call,
    /// body.
    pub const PARSE_NS: usize = ENTERS + 1;
    pub const CALL_NS: usize = PARSE_NS + 1;
    pub const ENVIRON_NS: usize = CALL_NS + 1;
    pub const APP_NS: usize = ENVIRON_NS + 1;
    pub const BODY_NS: usize = APP_NS + 1;
    /// Send: response queued until the transport reported it written, and how many sends.
    pub const SEND_NS: usize = BODY_NS + 1;
    pub const SENDS: usize = SEND_NS + 1;
    /// Gauges: open connections, requests whose response is not completely queued yet.
    pub const OPEN: usize = SENDS + 1;
    pub const IN_FLIGHT: usize = OPEN + 1;
    /// The pid of the process writing the slot (0: none), see [`crate::metrics`].
    pub const OWNER: usize = IN_FLIGHT + 1;
    /// Words used; slots are padded to whole cache-line pairs so no two writers share a line.
    pub const USED: usize = OWNER + 1;
}

/// Words per slot (a multiple of 128 bytes).
pub const SLOT_WORDS: usize = word::USED.next_multiple_of(16);

/// Method index in [`METHODS`] (a `match`: compared as integers, no call per request).
pub fn method_index(method: &str) -> usize {
    match method {
        "GET" => 0,
        "HEAD" => 1,
        "POST" => 2,
        "PUT" => 3,
        "DELETE" => 4,
        "PATCH" => 5,
        "OPTIONS" => 6,
        _ => OTHER_METHOD,
    }
}

/// The index of "other" in [`METHODS`]: any other method, or a request that was not parsed.
pub const OTHER_METHOD: usize = METHODS.len() - 1;

/// [`TIME_BUCKETS`] in nanoseconds.
const TIME_BUCKETS_NS: [u64; TIME_BUCKETS.len()] = {
    let mut ns = [0; TIME_BUCKETS.len()];
    let mut i = 0;
    while i < ns.len() {
        ns[i] = (TIME_BUCKETS[i] * 1e9) as u64;
        i += 1;
    }
    ns
};

/// Bucket of a duration in a time histogram (in integers: no float conversion per request).
fn time_bucket(ns: u64) -> usize {
    TIME_BUCKETS_NS
        .iter()
        .position(|&le| ns <= le)
        .unwrap_or(TIME_BUCKETS.len())
}

/// Nanoseconds in a duration (saturating: a duration past 584 years is not a request's).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Adds to a counter: its worker is its only writer, so a load and a store suffice.
fn bump(word: &AtomicU64, n: u64) {
    word.store(
        word.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

/// One worker's slot: written by that worker only.
pub struct Stats {
    memory: Arc<SharedMemory>,
    base: usize,
    /// Cumulative values the worker's sources report, as last added to the slot.
    last_calls: CallTimes,
    last_enters: u64,
    /// Nanoseconds in calls during the current round.
    round_calls_ns: u64,
}

impl Stats {
    /// Slot `slot` of `memory` (None if it holds no such slot). The gauges start again from
    /// zero (a replacement worker's connections are its own); the counters go on.
    pub fn new(memory: Arc<SharedMemory>, slot: usize) -> Option<Stats> {
        let base = slot * SLOT_WORDS;
        if base + SLOT_WORDS > memory.words().len() {
            return None;
        }
        let stats = Stats {
            memory,
            base,
            last_calls: CallTimes::default(),
            last_enters: 0,
            round_calls_ns: 0,
        };
        stats.set(word::OPEN, 0);
        stats.set(word::IN_FLIGHT, 0);
        Some(stats)
    }

    /// The slot's owner word (claimed and released by [`crate::metrics`]).
    pub fn owner(&self) -> &AtomicU64 {
        self.word(word::OWNER)
    }

    /// The slot's words: found once per method (indexes into it are then constants, checked
    /// at compile time), not once per counter.
    fn slot(&self) -> &[AtomicU64; SLOT_WORDS] {
        self.memory.words()[self.base..self.base + SLOT_WORDS]
            .try_into()
            .expect("a slot is SLOT_WORDS long")
    }

    fn word(&self, i: usize) -> &AtomicU64 {
        &self.slot()[i]
    }

    fn add(&self, i: usize, n: u64) {
        bump(self.word(i), n);
    }

    fn set(&self, i: usize, v: u64) {
        self.word(i).store(v, Ordering::Relaxed);
    }

    fn get(&self, i: usize) -> u64 {
        self.word(i).load(Ordering::Relaxed)
    }

    /// A request is handed to the app.
    pub fn started(&self) {
        self.add(word::IN_FLIGHT, 1);
    }

    /// A request's response is completely queued (or abandoned).
    pub fn finished(&self) {
        let w = self.word(word::IN_FLIGHT);
        w.store(
            w.load(Ordering::Relaxed).saturating_sub(1),
            Ordering::Relaxed,
        );
    }

    /// Counts an app call made `queue_ns` after the start of its round, which took `call_ns`
    /// (nanoseconds, as the request clock gives them: no conversion per request).
    pub fn called(&mut self, queue_ns: u64, call_ns: u64) {
        self.round_calls_ns += call_ns;
        let slot = self.slot();
        bump(&slot[word::CALL_NS], call_ns);
        bump(&slot[word::QUEUE + time_bucket(queue_ns)], 1);
        bump(&slot[word::QUEUE_SUM_NS], queue_ns);
    }

    /// Counts an answered request (`method`: its [`method_index`]) whose response was
    /// complete `duration_ns` after the start of the round that completed the request.
    pub fn answered(&mut self, method: usize, status: u16, duration_ns: u64) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        let method = method.min(OTHER_METHOD);
        let slot = self.slot();
        bump(&slot[word::REQUESTS + method * CLASSES.len() + class], 1);
        bump(&slot[word::DURATION + time_bucket(duration_ns)], 1);
        bump(&slot[word::DURATION_SUM_NS], duration_ns);
    }

    /// Counts a round that answered `requests` requests in `elapsed` (what was not spent in
    /// calls is the parse stage); `calls` (stage times, zero unless `--stats`) and `enters` are
    /// the worker's running totals.
    pub fn round(&mut self, requests: usize, elapsed: Duration, calls: CallTimes, enters: u64) {
        let parse_ns = nanos(elapsed).saturating_sub(std::mem::take(&mut self.round_calls_ns));
        self.add(word::ROUNDS, 1);
        if requests > 0 {
            let bucket = BATCH_BUCKETS
                .iter()
                .position(|&max| requests <= max)
                .unwrap_or(BATCH_BUCKETS.len());
            self.add(word::BATCHES + bucket, 1);
        }
        self.add(word::PARSE_NS, parse_ns);
        let last = std::mem::replace(&mut self.last_calls, calls);
        self.add(
            word::ENVIRON_NS,
            (calls.environ - last.environ).as_nanos() as u64,
        );
        self.add(word::APP_NS, (calls.app - last.app).as_nanos() as u64);
        self.add(word::BODY_NS, (calls.body - last.body).as_nanos() as u64);
        let last = std::mem::replace(&mut self.last_enters, enters);
        self.add(word::ENTERS, enters.wrapping_sub(last));
    }

    /// Adds the time since `queued` to the send stage.
    pub fn sent(&self, queued: Instant, now: Instant) {
        self.add(
            word::SEND_NS,
            now.saturating_duration_since(queued).as_nanos() as u64,
        );
        self.add(word::SENDS, 1);
    }

    /// The open connections now.
    pub fn open(&self, n: usize) {
        self.set(word::OPEN, n as u64);
    }

    /// The block as text, for stderr.
    pub fn report(&self, worker: usize, cpu: usize) -> String {
        let requests: u64 = (0..METHODS.len() * CLASSES.len())
            .map(|i| self.get(word::REQUESTS + i))
            .sum();
        let ns = |i| Duration::from_nanos(self.get(i));
        let per = |d: Duration, n: u64| {
            if n == 0 {
                0.0
            } else {
                d.as_secs_f64() * 1e6 / n as f64
            }
        };
        let mut out = String::new();
        let _ = writeln!(
            out,
            "ringwsgi stats: worker {worker} (CPU {cpu}): {requests} requests in {} rounds",
            self.get(word::ROUNDS)
        );
        let _ = writeln!(
            out,
            "  {:<40} {:>12} {:>14}",
            "stage", "total ms", "per request µs"
        );
        let stages = [
            ("receive and parse", ns(word::PARSE_NS), requests),
            ("call (environ, app, body)", ns(word::CALL_NS), requests),
            ("build environ", ns(word::ENVIRON_NS), requests),
            ("app call (until it returns)", ns(word::APP_NS), requests),
            ("body iteration and encoding", ns(word::BODY_NS), requests),
            (
                "send (queued until written, per send)",
                ns(word::SEND_NS),
                self.get(word::SENDS),
            ),
        ];
        for (name, d, n) in stages {
            let _ = writeln!(
                out,
                "  {name:<40} {:>12.1} {:>14.2}",
                d.as_secs_f64() * 1e3,
                per(d, n)
            );
        }
        let mut batches = String::new();
        let mut low = 1;
        for i in 0..=BATCH_BUCKETS.len() {
            let label = match BATCH_BUCKETS.get(i) {
                Some(&high) if high == low => format!("{high}"),
                Some(&high) => format!("{low}-{high}"),
                None => format!(">{}", BATCH_BUCKETS[BATCH_BUCKETS.len() - 1]),
            };
            let _ = write!(batches, " {label}: {}", self.get(word::BATCHES + i));
            low = BATCH_BUCKETS.get(i).map_or(low, |h| h + 1);
        }
        let _ = writeln!(out, "  batch sizes (rounds by requests answered):{batches}");
        let enters = self.get(word::ENTERS);
        let per_request = if requests == 0 {
            0.0
        } else {
            enters as f64 / requests as f64
        };
        let _ = write!(
            out,
            "  io_uring submissions (enters): {enters} ({per_request:.3} per request)"
        );
        out
    }
}

impl Drop for Stats {
    /// Gives the slot back (if this process claimed it), for a later worker to continue.
    fn drop(&mut self) {
        let pid = u64::from(std::process::id());
        let _ = self
            .owner()
            .compare_exchange(pid, 0, Ordering::AcqRel, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats() -> Stats {
        let memory = SharedMemory::create(c"stats-test", 2 * SLOT_WORDS).unwrap();
        Stats::new(Arc::new(memory), 1).unwrap()
    }

    #[test]
    fn times_fall_in_their_buckets_at_the_bounds() {
        assert_eq!(time_bucket(0), 0);
        assert_eq!(time_bucket(100_000), 0, "le is inclusive");
        assert_eq!(time_bucket(100_001), 1);
        assert_eq!(time_bucket(250_000), 1);
        assert_eq!(time_bucket(5_000_000_000), TIME_BUCKETS.len() - 1);
        assert_eq!(time_bucket(5_000_000_001), TIME_BUCKETS.len());
        assert_eq!(nanos(Duration::MAX), u64::MAX);
    }

    #[test]
    fn methods_have_their_labels() {
        for (i, &label) in METHODS.iter().enumerate() {
            let expected = if label == "other" {
                METHODS.len() - 1
            } else {
                i
            };
            assert_eq!(method_index(label), expected, "{label}");
        }
        assert_eq!(
            method_index("get"),
            METHODS.len() - 1,
            "methods are case-sensitive"
        );
    }

    #[test]
    fn batches_fall_in_their_buckets() {
        let mut stats = stats();
        for n in [0, 1, 2, 3, 4, 16, 17, 100] {
            stats.round(n, Duration::ZERO, CallTimes::default(), 0);
        }
        assert_eq!(stats.get(word::ROUNDS), 8);
        let batches: Vec<u64> = (0..8).map(|i| stats.get(word::BATCHES + i)).collect();
        assert_eq!(batches, [1, 1, 2, 0, 1, 1, 0, 1]);
        let report = stats.report(0, 1);
        assert!(report.contains("1: 1 2: 1 3-4: 2"), "{report}");
        assert!(report.contains(">64: 1"), "{report}");
    }

    /// An inline request called `called` after the start of its round, answered when the
    /// call returned at `returned`.
    fn request(stats: &mut Stats, method: &str, status: u16, called: Duration, returned: Duration) {
        let (called, returned) = (nanos(called), nanos(returned));
        stats.called(called, returned - called);
        stats.answered(method_index(method), status, returned);
    }

    #[test]
    fn requests_count_by_method_class_and_time() {
        assert!(Stats::new(stats().memory.clone(), 2).is_none());
        let mut stats = stats();
        let ms = Duration::from_millis;
        request(&mut stats, "GET", 200, ms(1), ms(3));
        request(&mut stats, "BREW", 418, ms(0), ms(30_000));
        request(&mut stats, "GET", 999, ms(2), ms(3));
        assert_eq!(stats.get(word::REQUESTS + 1), 1);
        assert_eq!(stats.get(word::REQUESTS + 4), 1, "GET 999 counts as 5xx");
        assert_eq!(
            stats.get(word::REQUESTS + 7 * 5 + 3),
            1,
            "BREW 4xx as other"
        );
        assert_eq!(stats.get(word::DURATION + 5), 2, "3 ms in the 5 ms bucket");
        assert_eq!(stats.get(word::DURATION + TIME_BUCKETS.len()), 1);
        assert_eq!(stats.get(word::DURATION_SUM_NS), 30_006_000_000);
        assert_eq!(stats.get(word::QUEUE_SUM_NS), 3_000_000);
        assert_eq!(stats.get(word::CALL_NS), 30_003_000_000);
        stats.round(3, Duration::from_secs(31), CallTimes::default(), 0);
        assert_eq!(stats.get(word::PARSE_NS), 997_000_000);
        assert!(stats.report(0, 0).contains("3 requests"));
    }

    #[test]
    fn a_new_worker_continues_the_counters_and_resets_the_gauges() {
        let memory = Arc::new(SharedMemory::create(c"stats-test", SLOT_WORDS).unwrap());
        let mut first = Stats::new(memory.clone(), 0).unwrap();
        request(&mut first, "GET", 200, Duration::ZERO, Duration::ZERO);
        first.open(3);
        first.started();
        drop(first);
        let mut second = Stats::new(memory, 0).unwrap();
        request(&mut second, "GET", 200, Duration::ZERO, Duration::ZERO);
        assert_eq!(second.get(word::REQUESTS + 1), 2);
        assert_eq!(second.get(word::OPEN), 0);
        assert_eq!(second.get(word::IN_FLIGHT), 0);
    }
}
