//! The interpreters worker threads run the app in: own-GIL subinterpreters (PEP 684), created,
//! attached to and ended on one owning thread, or the process's main interpreter (`--mode
//! process`), which a worker thread enters through a thread state of its own.
//!
//! Rules from shared/notes/subinterpreters.md that this module enforces by construction:
//! - a [`SubInterpreter`] is created on a fresh thread that holds no thread state, and the same
//!   thread ends it (the type is neither `Send` nor `Sync`);
//! - the main interpreter imports `_datetime` before any subinterpreter exists (CPython
//!   gh-136421: two subinterpreters importing datetime otherwise corrupt the heap at exit);
//! - PyO3's one process-global exception type that error fetching touches (`PanicException`) is
//!   created in the main interpreter, which outlives every subinterpreter.

use std::marker::PhantomData;

use pyo3::ffi;
use pyo3::prelude::*;

use crate::config::Interpreters;

/// Why a subinterpreter could not be created.
#[derive(Debug, thiserror::Error)]
pub enum InterpreterError {
    #[error("own-GIL subinterpreters need Python 3.13 or newer (this is {0})")]
    Unsupported(String),
    #[error("Py_NewInterpreterFromConfig failed: {0}")]
    Create(String),
}

/// Prepares the main interpreter of a worker process before any subinterpreter is created.
/// Call once, attached, on the main thread.
pub fn prepare_main_interpreter(py: Python<'_>) {
    // Workaround for CPython gh-136421 (fixed upstream in gh-136583, not in 3.13.0).
    let _ = py.import("_datetime");
    // The first fetched error makes PyO3 create its PanicException type; let that happen here,
    // in the interpreter that lives longest, rather than in whichever worker errs first.
    let _ = py.import("ringwsgi_no_such_module_");
}

/// The interpreter of one worker thread, owned by that thread.
pub enum Interpreter {
    Sub(SubInterpreter),
    /// The main interpreter, entered through this thread's own thread state.
    Main(ThreadState),
}

impl Interpreter {
    /// A new subinterpreter, or a thread state in the main interpreter, for the current thread
    /// (which must hold no thread state yet). Left detached.
    pub fn new(kind: Interpreters) -> Result<Self, InterpreterError> {
        Ok(match kind {
            Interpreters::Sub => Interpreter::Sub(SubInterpreter::new()?),
            Interpreters::Main => Interpreter::Main(ThreadState::new(InterpreterRef::main())),
        })
    }

    /// Runs `f` attached to this interpreter.
    pub fn attach<R>(&self, f: impl FnOnce(Python<'_>) -> R) -> R {
        match self {
            Interpreter::Sub(sub) => sub.attach(f),
            Interpreter::Main(tstate) => tstate.attach(f),
        }
    }

    /// A reference other threads use to run Python in this interpreter ([`ThreadState`]).
    pub fn reference(&self) -> InterpreterRef {
        match self {
            Interpreter::Sub(sub) => sub.reference(),
            Interpreter::Main(_) => InterpreterRef::main(),
        }
    }

    /// Ends a subinterpreter, or deletes the thread state in the main interpreter. Everything
    /// Rust holds of it must have been released before, while attached.
    pub fn end(self) {
        match self {
            Interpreter::Sub(sub) => sub.end(),
            Interpreter::Main(tstate) => drop(tstate),
        }
    }
}

/// An own-GIL subinterpreter owned by the current thread. Detached while not in [`attach`].
///
/// [`attach`]: SubInterpreter::attach
pub struct SubInterpreter {
    tstate: *mut ffi::PyThreadState,
    /// The owning thread must be the one that ends it: not `Send`.
    _owned_by_thread: PhantomData<*mut ()>,
}

impl SubInterpreter {
    /// Creates an own-GIL subinterpreter on this thread, which must hold no Python thread state
    /// (a thread spawned by Rust). The interpreter is left detached.
    #[cfg(Py_3_13)]
    pub fn new() -> Result<Self, InterpreterError> {
        let config = ffi::PyInterpreterConfig {
            use_main_obmalloc: 0,
            allow_fork: 0,
            allow_exec: 0,
            allow_threads: 1,
            allow_daemon_threads: 0,
            check_multi_interp_extensions: 1,
            gil: ffi::PyInterpreterConfig_OWN_GIL,
        };
        let mut tstate: *mut ffi::PyThreadState = std::ptr::null_mut();
        // SAFETY: the interpreter is initialized (this code runs from the extension module, or
        // from tests after `Python::initialize`) and this thread holds no thread state, which is
        // what Py_NewInterpreterFromConfig requires. On success the new thread state is current
        // on this thread and bound to it for PyGILState (so `Python::attach` finds it).
        let status = unsafe { ffi::Py_NewInterpreterFromConfig(&mut tstate, &config) };
        // SAFETY: PyStatus_Exception only inspects the status value.
        if unsafe { ffi::PyStatus_Exception(status) } != 0 || tstate.is_null() {
            let msg = if status.err_msg.is_null() {
                "unknown error".to_owned()
            } else {
                // SAFETY: err_msg is a static NUL-terminated C string owned by CPython.
                unsafe { std::ffi::CStr::from_ptr(status.err_msg) }
                    .to_string_lossy()
                    .into_owned()
            };
            return Err(InterpreterError::Create(msg));
        }
        // SAFETY: the new interpreter's thread state is current and attached on this thread;
        // detach so the thread holds nothing while it waits for I/O.
        let saved = unsafe { ffi::PyEval_SaveThread() };
        debug_assert_eq!(saved, tstate);
        Ok(SubInterpreter {
            tstate,
            _owned_by_thread: PhantomData,
        })
    }

    /// Subinterpreters are not usable before 3.13 (3.12.1 crashes at interpreter exit).
    #[cfg(not(Py_3_13))]
    pub fn new() -> Result<Self, InterpreterError> {
        Err(InterpreterError::Unsupported(python_version()))
    }

    /// Runs `f` attached to this interpreter. PyGILState knows this thread's thread state, so
    /// `Python::attach` restores it (and raises PyO3's attach count, so `Py<T>` dropped inside
    /// `f` are released at once).
    pub fn attach<R>(&self, f: impl FnOnce(Python<'_>) -> R) -> R {
        Python::attach(f)
    }

    /// A reference other threads use to run Python in this interpreter ([`ThreadState`]).
    pub fn reference(&self) -> InterpreterRef {
        // SAFETY: `tstate` is this interpreter's live thread state; reading its interpreter
        // pointer needs no lock.
        InterpreterRef(unsafe { ffi::PyThreadState_GetInterpreter(self.tstate) })
    }

    /// Ends the interpreter on its owning thread. Everything of it that Rust holds (`Py<T>`)
    /// must have been released before, while attached.
    pub fn end(self) {
        // SAFETY: this thread owns the interpreter and is detached; restoring its own thread
        // state attaches it, and Py_EndInterpreter requires exactly that (current, attached,
        // the only thread state left in the interpreter since daemon threads are disallowed).
        unsafe {
            ffi::PyEval_RestoreThread(self.tstate);
            ffi::Py_EndInterpreter(self.tstate);
        }
        // Py_EndInterpreter leaves no current thread state; nothing else to undo.
        std::mem::forget(self);
    }
}

impl Drop for SubInterpreter {
    fn drop(&mut self) {
        // Only reached when `end` was not called (a panic unwinding the worker thread). Ending the
        // interpreter in that state is not safe; leaking it is.
        tracing::error!("a subinterpreter was abandoned without being ended");
    }
}

/// Names a subinterpreter for other threads (`--threads`). Valid while the [`SubInterpreter`]
/// lives: its owner joins every thread that uses it before ending it.
#[derive(Clone, Copy)]
pub struct InterpreterRef(*mut ffi::PyInterpreterState);

impl InterpreterRef {
    /// The process's main interpreter, which outlives every thread that uses it.
    pub fn main() -> Self {
        // SAFETY: the interpreter is initialized (this runs in a worker process started by the
        // extension module, or in tests after `Python::initialize`); reading the main
        // interpreter's pointer needs no thread state.
        InterpreterRef(unsafe { ffi::PyInterpreterState_Main() })
    }
}

// SAFETY: a PyInterpreterState pointer may be used from any thread (PyThreadState_New takes it
// without the GIL); what it points to is owned by CPython.
unsafe impl Send for InterpreterRef {}

/// A thread's own thread state in an interpreter: PyGILState only knows the main interpreter,
/// so a thread other than a subinterpreter's owner needs one before it can attach (and a
/// worker thread of the main interpreter keeps one for its whole life instead of having
/// PyGILState create and delete one at every attach). Created detached; dropped
/// (cleared and deleted) on the same thread, before the interpreter ends.
pub struct ThreadState {
    tstate: *mut ffi::PyThreadState,
    _owned_by_thread: PhantomData<*mut ()>,
}

impl ThreadState {
    /// A new thread state for the current thread, which must hold none yet.
    pub fn new(interpreter: InterpreterRef) -> Self {
        // SAFETY: the interpreter is alive (see InterpreterRef); PyThreadState_New needs no GIL
        // and also binds the new state to this thread for PyGILState, so `Python::attach`
        // finds it once it is current.
        let tstate = unsafe { ffi::PyThreadState_New(interpreter.0) };
        assert!(
            !tstate.is_null(),
            "PyThreadState_New failed (out of memory)"
        );
        ThreadState {
            tstate,
            _owned_by_thread: PhantomData,
        }
    }

    /// Runs `f` attached to the interpreter through this thread state.
    pub fn attach<R>(&self, f: impl FnOnce(Python<'_>) -> R) -> R {
        struct Detach;
        impl Drop for Detach {
            fn drop(&mut self) {
                // SAFETY: pairs with the restore below, on the same thread.
                unsafe { ffi::PyEval_SaveThread() };
            }
        }
        // SAFETY: this thread's own thread state, not current anywhere else: making it current
        // takes the interpreter's GIL.
        unsafe { ffi::PyEval_RestoreThread(self.tstate) };
        let _detach = Detach;
        Python::attach(f)
    }
}

impl Drop for ThreadState {
    fn drop(&mut self) {
        // SAFETY: on the creating thread (not Send), detached: attach with it, clear it and
        // delete it as the current thread state, leaving the thread with none.
        unsafe {
            ffi::PyEval_RestoreThread(self.tstate);
            ffi::PyThreadState_Clear(self.tstate);
            ffi::PyThreadState_DeleteCurrent();
        }
    }
}

/// Runs `f` detached from the current interpreter (its GIL released, so the app's own threads
/// run), then attaches again. Unlike `Python::detach`, `f` need not be `Send`: it runs on this
/// same thread. `f` must not touch Python (it only waits for I/O).
pub fn detached<R>(_py: Python<'_>, f: impl FnOnce() -> R) -> R {
    // SAFETY: `_py` proves this thread is attached, so there is a current thread state to save;
    // it is restored on the same thread before returning (also on unwind, by the guard), and
    // `f` touches no Python object in between.
    struct Reattach(*mut ffi::PyThreadState);
    impl Drop for Reattach {
        fn drop(&mut self) {
            // SAFETY: restores the thread state saved below, on the thread that saved it.
            unsafe { ffi::PyEval_RestoreThread(self.0) }
        }
    }
    let _reattach = Reattach(unsafe { ffi::PyEval_SaveThread() });
    f()
}

/// Whether own-GIL subinterpreters can run here: Python 3.13 or newer, at build and at run time.
pub fn subinterpreters_supported() -> bool {
    cfg!(Py_3_13) && Python::attach(|py| py.version_info() >= (3, 13))
}

/// The running Python's version, e.g. "3.13.0".
pub fn python_version() -> String {
    Python::attach(|py| {
        let v = py.version_info();
        format!("{}.{}.{}", v.major, v.minor, v.patch)
    })
}
