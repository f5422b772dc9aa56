//! `--timeout`: interrupts app calls that run too long.
//!
//! Each thread that calls the app publishes the call it is in through its own [`CallTimer`]: a
//! call number in a single-writer slot (two relaxed stores per call, no clock read, no lock).
//! One monitor thread per process polls the slots every [`POLL`]; a slot that shows the same
//! call for longer than the timeout is handed to its interpreter's [`Raiser`], a thread with its
//! own thread state in that interpreter, which raises `RequestTimeout` in the calling thread
//! with `PyThreadState_SetAsyncExc`. It takes effect at the call's next bytecode boundary; a
//! call stuck in C code (a blocking read, `time.sleep`) only sees it once that returns. A call
//! still running `--graceful-timeout` after the timeout makes the worker process ask the master
//! to replace it (`replace timeout` on the status pipe).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use pyo3::ffi;
use pyo3::prelude::*;

use super::interpreter::{InterpreterRef, ThreadState};

/// How often the monitor looks at the slots (the timeout's precision).
const POLL: Duration = Duration::from_millis(200);

/// What one calling thread publishes: the call it is in (0: none) and the last call a timeout
/// was raised in.
#[derive(Debug, Default)]
struct CallSlot {
    /// Written only by the calling thread.
    active: AtomicU64,
    /// Written only by the raiser, while it holds the interpreter's GIL.
    raised: AtomicU64,
}

/// A calling thread's side of the watchdog (owned by its `Wsgi`).
#[derive(Debug)]
pub struct CallTimer {
    slot: Arc<CallSlot>,
    /// Number of the current (or last) call.
    call: u64,
    /// The thread's id for `PyThreadState_SetAsyncExc`.
    ident: u64,
}

impl CallTimer {
    /// A call of the app (or a step of its body) begins.
    pub(super) fn begin(&mut self) {
        self.call += 1;
        self.slot.active.store(self.call, Ordering::Relaxed);
    }

    /// The call ended; returns whether it was interrupted by the timeout. Called attached,
    /// on the calling thread.
    pub(super) fn end(&mut self, _py: Python<'_>) -> bool {
        self.slot.active.store(0, Ordering::Relaxed);
        if self.slot.raised.load(Ordering::Relaxed) != self.call {
            return false;
        }
        // The raiser set the exception while this thread was in the call (it checked under the
        // GIL), but the call may have returned without reaching a bytecode boundary since: drop
        // it, or it would fire in the next request.
        // SAFETY: attached (`_py`), in the interpreter whose thread `ident` names; a NULL
        // exception clears the pending one.
        unsafe { ffi::PyThreadState_SetAsyncExc(self.ident as _, std::ptr::null_mut()) };
        true
    }
}

/// A request to the raiser thread.
enum Raise {
    /// Raise the timeout in thread `ident`'s call number `call`.
    Call {
        slot: Arc<CallSlot>,
        call: u64,
        ident: u64,
        ran_for: Duration,
    },
    Stop,
}

/// One interpreter's raiser thread (started by the thread that owns the interpreter, stopped
/// before the interpreter ends).
pub struct Raiser {
    watcher: CallWatcher,
    thread: Option<JoinHandle<()>>,
}

/// Registers the threads that call the app in one interpreter (cloned into `--threads` pools).
#[derive(Clone)]
pub struct CallWatcher {
    shared: Arc<Shared>,
    tx: Sender<Raise>,
}

impl Raiser {
    fn start(shared: Arc<Shared>, interpreter: InterpreterRef) -> Raiser {
        let (tx, rx) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name("ringwsgi-timeout".into())
            .spawn(move || raise_requested(interpreter, &rx))
            .expect("spawn the timeout raiser thread");
        Raiser {
            watcher: CallWatcher { shared, tx },
            thread: Some(thread),
        }
    }

    /// What the interpreter's calling threads register with.
    pub fn watcher(&self) -> CallWatcher {
        self.watcher.clone()
    }

    /// Ends the raiser thread. Call detached, before the interpreter ends.
    pub fn stop(mut self) {
        // The monitor keeps senders of its own: say stop rather than wait for all to go.
        let _ = self.watcher.tx.send(Raise::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The raiser thread: waits (detached) for requests, attaches to raise.
fn raise_requested(interpreter: InterpreterRef, requests: &Receiver<Raise>) {
    let thread_state = ThreadState::new(interpreter);
    for raise in requests {
        let Raise::Call {
            slot,
            call,
            ident,
            ran_for,
        } = raise
        else {
            break;
        };
        thread_state.attach(|py| {
            // The calling thread waits for the GIL now: if the slot still shows the call, the
            // exception lands in it and nowhere else.
            if slot.active.load(Ordering::Relaxed) != call {
                return;
            }
            let class = match py
                .import("_ringwsgi_bootstrap")
                .and_then(|m| m.getattr("RequestTimeout"))
            {
                Ok(class) => class,
                Err(e) => return tracing::error!("cannot interrupt a call: {e}"),
            };
            // SAFETY: attached to the interpreter the calling thread runs in; `class` is an
            // exception class of it (SetAsyncExc takes a new reference of its own).
            let found = unsafe { ffi::PyThreadState_SetAsyncExc(ident as _, class.as_ptr()) };
            if found == 1 {
                slot.raised.store(call, Ordering::Relaxed);
                tracing::warn!(
                    "an app call has run for {:.1} s (--timeout): interrupting it",
                    ran_for.as_secs_f64()
                );
            }
        });
    }
}

/// A slot as the monitor sees it.
struct Watched {
    slot: Arc<CallSlot>,
    ident: u64,
    raiser: Sender<Raise>,
    /// The call seen at the last poll, and since when it has been seen.
    seen: u64,
    since: Instant,
    /// Already handled: interrupted, reported as stuck.
    raised: bool,
    stuck: bool,
}

struct Shared {
    timeout: Duration,
    /// Running this long: the process asks to be replaced.
    stuck_after: Duration,
    watched: Mutex<Vec<Watched>>,
    /// Asks for the process to be replaced.
    on_stuck: Box<dyn Fn() + Send + Sync>,
}

/// The process's watchdog (disabled with `--timeout 0`).
#[derive(Clone, Default)]
pub struct Watchdog {
    shared: Option<Arc<Shared>>,
}

impl std::fmt::Debug for Watchdog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watchdog")
            .field("timeout", &self.shared.as_ref().map(|s| s.timeout))
            .finish()
    }
}

impl Watchdog {
    /// Starts the monitor thread; `timeout` zero disables everything. `on_stuck` is called
    /// when a call has still not returned `graceful` after its timeout.
    pub fn start(
        timeout: Duration,
        graceful: Duration,
        on_stuck: impl Fn() + Send + Sync + 'static,
    ) -> Watchdog {
        if timeout.is_zero() {
            return Watchdog::default();
        }
        let shared = Arc::new(Shared {
            timeout,
            stuck_after: timeout + graceful,
            watched: Mutex::new(Vec::new()),
            on_stuck: Box::new(on_stuck),
        });
        let monitor = shared.clone();
        std::thread::Builder::new()
            .name("ringwsgi-watchdog".into())
            .spawn(move || loop {
                std::thread::sleep(POLL);
                monitor.poll(Instant::now());
            })
            .expect("spawn the watchdog thread");
        Watchdog {
            shared: Some(shared),
        }
    }

    /// A raiser for `interpreter` (None when disabled).
    pub fn raiser(&self, interpreter: InterpreterRef) -> Option<Raiser> {
        let shared = self.shared.clone()?;
        Some(Raiser::start(shared, interpreter))
    }
}

impl CallWatcher {
    /// Watches the calls of the current thread, which runs the app in the raiser's interpreter.
    pub fn watch(&self, _py: Python<'_>) -> CallTimer {
        let (shared, tx) = (&self.shared, &self.tx);
        // SAFETY: plain query of this thread's id, the one its thread state records.
        let ident = unsafe { ffi::PyThread_get_thread_ident() } as u64;
        let slot = Arc::new(CallSlot::default());
        shared
            .watched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Watched {
                slot: slot.clone(),
                ident,
                raiser: tx.clone(),
                seen: 0,
                since: Instant::now(),
                raised: false,
                stuck: false,
            });
        CallTimer {
            slot,
            call: 0,
            ident,
        }
    }
}

impl Shared {
    fn poll(&self, now: Instant) {
        let mut watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        for w in watched.iter_mut() {
            let call = w.slot.active.load(Ordering::Relaxed);
            if call != w.seen {
                (w.seen, w.since, w.raised, w.stuck) = (call, now, false, false);
            }
            if call == 0 {
                continue;
            }
            let ran_for = now - w.since;
            if ran_for >= self.timeout && !w.raised {
                w.raised = true;
                let _ = w.raiser.send(Raise::Call {
                    slot: w.slot.clone(),
                    call,
                    ident: w.ident,
                    ran_for,
                });
            }
            if ran_for >= self.stuck_after && !w.stuck {
                w.stuck = true;
                tracing::error!(
                    "an app call has run for {:.1} s and does not return (stuck outside Python \
                     code?): asking for this worker process to be replaced",
                    ran_for.as_secs_f64()
                );
                (self.on_stuck)();
            }
        }
    }
}
