//! Metrics: the statistics blocks of all workers in memory shared by the master and its worker
//! processes, and the Prometheus endpoint (`--metrics-bind`) the master serves from them.
//!
//! The master creates the shared memory (two slots per worker thread, see
//! [`crate::worker::stats`]) before it starts worker processes and names its inherited
//! descriptor in the environment; each worker process maps it and each worker thread writes
//! only its own slot. The endpoint sums the slots when scraped, without locks: the request path
//! never waits for it.
//!
//! A slot has one writer at a time: a worker thread claims one of its worker's two slots by
//! writing its pid into the slot's owner word (compare-and-swap, once at start) and clears it
//! when it ends. A worker process started by a reload takes the other slot while the one it
//! replaces finishes; a replacement for a process that died takes over the dead one's slot,
//! continuing its counters (they never go backwards) and zeroing its gauges.

mod endpoint;

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use crate::config::{self, Args, ConfigError};
use crate::io::SharedMemory;
use crate::worker::stats::{word, Stats, SLOT_WORDS};

/// Slots per worker: the one serving, and one for a reload's replacement.
const GENERATIONS: usize = 2;

/// Environment variable naming the shared memory's descriptor, from master to worker process.
const SHARED_MEMORY_ENV: &str = "RINGWSGI_STATS_FD";

/// Worker processes the master started again after one died (the master's own counter).
static WORKER_RESTARTS: AtomicU64 = AtomicU64::new(0);

/// The worker process's mapping of the master's shared memory.
static WORKER_MEMORY: OnceLock<Arc<SharedMemory>> = OnceLock::new();

/// Why metrics could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot create the statistics shared memory: {0}")]
    SharedMemory(std::io::Error),
    #[error("cannot bind --metrics-bind {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
}

/// The master counts a worker process it starts again: after one died, or in place of one that
/// asked to be replaced (not for a reload).
pub fn worker_restarted() {
    WORKER_RESTARTS.fetch_add(1, Ordering::Relaxed);
}

/// In the master, before any worker process starts: creates the shared memory for `workers`
/// worker threads (of all worker processes) when `--stats` or `--metrics-bind` asks for statistics, names it to the
/// worker processes to come (environment), and starts the endpoint's thread for
/// `--metrics-bind`. Keep what it returns for the master's whole life.
pub fn start(args: &Args, workers: usize) -> Result<Option<Arc<SharedMemory>>, MetricsError> {
    let slots = workers * GENERATIONS;
    if !args.stats && args.metrics_bind.is_none() {
        return Ok(None);
    }
    let memory = SharedMemory::create(c"ringwsgi-stats", slots * SLOT_WORDS)
        .map_err(MetricsError::SharedMemory)?;
    let memory = Arc::new(memory);
    // The master is still single-threaded here, so changing its environment is safe; every
    // worker process it starts (also replacements) inherits the variable and the descriptor.
    std::env::set_var(SHARED_MEMORY_ENV, memory.fd().as_raw_fd().to_string());
    if let Some(bind) = &args.metrics_bind {
        // TCP only: a scrape target is a HOST:PORT.
        let config::BindSpec::Tcp(addr) = config::parse_bind(bind)? else {
            return Err(ConfigError::Bind(bind.clone()).into());
        };
        let listener =
            std::net::TcpListener::bind(addr).map_err(|e| MetricsError::Bind(addr, e))?;
        let bound = listener
            .local_addr()
            .map_err(|e| MetricsError::Bind(addr, e))?;
        tracing::info!("Metrics at: http://{bound}/metrics");
        let memory = memory.clone();
        std::thread::Builder::new()
            .name("ringwsgi-metrics".into())
            .spawn(move || endpoint::serve(listener, &memory, slots))
            .map_err(MetricsError::SharedMemory)?;
    }
    Ok(Some(memory))
}

/// In a worker process, before it starts threads: maps the master's shared memory, if it
/// passed one, and forgets the variable (the app's subprocesses do not get it).
pub fn adopt_shared_memory() {
    let Ok(fd) = std::env::var(SHARED_MEMORY_ENV) else {
        return;
    };
    std::env::remove_var(SHARED_MEMORY_ENV);
    match fd
        .parse()
        .map_err(std::io::Error::other)
        .and_then(SharedMemory::adopt)
    {
        Ok(memory) => {
            let _ = WORKER_MEMORY.set(Arc::new(memory));
        }
        Err(e) => tracing::error!("cannot map the statistics shared memory: {e}"),
    }
}

/// The statistics block of worker `worker` (numbered across all worker processes), if
/// statistics are on: the first of its slots whose owner died, else the first free one.
pub fn worker_stats(worker: usize) -> Option<Stats> {
    let memory = WORKER_MEMORY.get()?;
    let workers = memory.words().len() / SLOT_WORDS / GENERATIONS;
    if worker >= workers {
        tracing::warn!("worker {worker} has no statistics slot");
        return None;
    }
    let pid = u64::from(std::process::id());
    let dead = |owner: u64| owner != 0 && owner != pid && !process_alive(owner);
    for take_dead in [true, false] {
        for generation in 0..GENERATIONS {
            let slot = generation * workers + worker;
            let owner = &memory.words()[slot * SLOT_WORDS + word::OWNER];
            let current = owner.load(Ordering::Acquire);
            let wanted = if take_dead {
                dead(current)
            } else {
                current == 0
            };
            if wanted
                && owner
                    .compare_exchange(current, pid, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                return Stats::new(memory.clone(), slot);
            }
        }
    }
    tracing::warn!(
        "worker {worker}: both statistics slots are in use; its requests are not counted"
    );
    None
}

/// Whether process `pid` exists (a zombie not yet reaped by the master counts).
fn process_alive(pid: u64) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(e) => e == nix::errno::Errno::EPERM,
    }
}
