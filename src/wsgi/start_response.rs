//! `start_response` and `write()` as C functions of the worker's interpreter.
//!
//! One pair per [`super::Wsgi`] (one per interpreter thread), reused for every request: the
//! response being produced keeps its state in a [`Slot`] that the worker resets before each
//! call and points at the right stream before resuming one. Calling a Python-level callable
//! instead costs a new object, a Python frame and four attribute accesses per request.
//!
//! Ownership: the slot lives in a capsule; `write` has the capsule as its `self`, and
//! `start_response` has the tuple `(capsule, write)`, so nothing forms a cycle and the slot is
//! freed (with the references it holds) whenever the last of them is, even if an app keeps
//! `start_response` past the worker's end. References in the slot are raw and released with
//! `Py_XDECREF`: the capsule may be destroyed when PyO3 does not consider the thread attached.

use std::ffi::CStr;
use std::ptr::{self, NonNull};

use pyo3::ffi;
use pyo3::prelude::*;

/// Largest total of write() data held while one call of the app runs (the app runs on the I/O
/// thread, so nothing is sent until it returns).
pub const WRITE_LIMIT: usize = 16 * 1024 * 1024;

const CAPSULE_NAME: &CStr = c"ringwsgi.start_response";

/// The state of the response being produced. Raw references: owned, or null.
pub struct Slot {
    status: *mut ffi::PyObject,
    headers: *mut ffi::PyObject,
    /// A list of the bytes passed to write() since they were last taken, or null.
    written: *mut ffi::PyObject,
    written_size: usize,
    /// The head has gone out: a call with exc_info re-raises.
    sent: bool,
}

impl Slot {
    fn clear(&mut self) {
        // SAFETY: each field is an owned reference or null; the caller holds the GIL.
        unsafe {
            for p in [&mut self.status, &mut self.headers, &mut self.written] {
                ffi::Py_XDECREF(std::mem::replace(p, ptr::null_mut()));
            }
        }
        self.written_size = 0;
        self.sent = false;
    }
}

/// The per-interpreter pair and the slot they share.
pub struct StartResponse {
    callable: Py<PyAny>,
    /// Keeps the slot alive for as long as `slot` is used.
    _capsule: Py<PyAny>,
    slot: NonNull<Slot>,
}

/// The state of a parked response, kept with its stream while other requests use the slot.
pub struct Saved {
    status: Option<Py<PyAny>>,
    headers: Option<Py<PyAny>>,
}

impl StartResponse {
    pub fn new(py: Python<'_>) -> PyResult<Self> {
        let slot = Box::into_raw(Box::new(Slot {
            status: ptr::null_mut(),
            headers: ptr::null_mut(),
            written: ptr::null_mut(),
            written_size: 0,
            sent: false,
        }));
        // SAFETY: `slot` is a valid heap pointer whose ownership passes to the capsule (freed by
        // `drop_slot`); the name is a 'static C string as the capsule API requires. On failure
        // the box is reclaimed here.
        let capsule = unsafe {
            let capsule = ffi::PyCapsule_New(slot.cast(), CAPSULE_NAME.as_ptr(), Some(drop_slot));
            if capsule.is_null() {
                drop(Box::from_raw(slot));
                return Err(PyErr::fetch(py));
            }
            Bound::from_owned_ptr(py, capsule)
        };
        // SAFETY: the method definitions are 'static and immutable; `self` objects are valid.
        let write = unsafe { new_function(py, &WRITE_DEF, capsule.as_ptr())? };
        let pair = pyo3::types::PyTuple::new(py, [capsule.as_any(), &write])?;
        // SAFETY: as above.
        let callable = unsafe { new_function(py, &START_RESPONSE_DEF, pair.as_ptr())? };
        Ok(StartResponse {
            callable: callable.unbind(),
            _capsule: capsule.unbind().into_any(),
            // SAFETY: non-null (just allocated); alive while `_capsule` is held.
            slot: unsafe { NonNull::new_unchecked(slot) },
        })
    }

    /// The callable passed to the app.
    pub fn callable<'py>(&self, py: Python<'py>) -> &Bound<'py, PyAny> {
        self.callable.bind(py)
    }

    fn slot(&mut self, _py: Python<'_>) -> &mut Slot {
        // SAFETY: the capsule (held by self) keeps the slot alive. The only other users are the
        // C functions, which run only while the app runs (under the GIL, inside a call made by
        // this thread), never while this borrow, tied to `&mut self`, is alive.
        unsafe { &mut *self.slot.as_ptr() }
    }

    /// Starts a new response: no status, nothing written, nothing sent.
    pub fn reset(&mut self, py: Python<'_>) {
        self.slot(py).clear();
    }

    /// The status and headers passed to start_response, if it was called.
    pub fn status_and_headers<'py>(
        &mut self,
        py: Python<'py>,
    ) -> Option<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        let slot = self.slot(py);
        if slot.status.is_null() {
            return None;
        }
        // SAFETY: non-null owned references held by the slot; new strong references are made.
        unsafe {
            Some((
                Bound::from_borrowed_ptr(py, slot.status),
                Bound::from_borrowed_ptr(py, slot.headers),
            ))
        }
    }

    /// Takes the bytes passed to write() since the last call.
    pub fn take_written<'py>(&mut self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        let slot = self.slot(py);
        let written = std::mem::replace(&mut slot.written, ptr::null_mut());
        slot.written_size = 0;
        // SAFETY: the slot's owned reference (or null) moves to the Bound.
        unsafe { Bound::from_owned_ptr_or_opt(py, written) }
    }

    /// The head has gone out.
    pub fn mark_sent(&mut self, py: Python<'_>) {
        self.slot(py).sent = true;
    }

    /// The state of the current response, to be restored before it is resumed.
    pub fn save(&mut self, py: Python<'_>) -> Saved {
        let pair = self.status_and_headers(py);
        Saved {
            status: pair.as_ref().map(|(s, _)| s.clone().unbind()),
            headers: pair.map(|(_, h)| h.unbind()),
        }
    }

    /// Makes `saved` (a response whose head was sent) the current response again.
    pub fn restore(&mut self, py: Python<'_>, saved: &Saved) {
        let slot = self.slot(py);
        slot.clear();
        slot.status = saved
            .status
            .as_ref()
            .map_or(ptr::null_mut(), |s| s.clone_ref(py).into_ptr());
        slot.headers = saved
            .headers
            .as_ref()
            .map_or(ptr::null_mut(), |h| h.clone_ref(py).into_ptr());
        slot.sent = true;
    }
}

/// Creates a builtin function object for `def` bound to `slf`.
///
/// # Safety
/// `def` must be 'static and never mutated; `slf` a valid object.
unsafe fn new_function<'py>(
    py: Python<'py>,
    def: &'static MethodDef,
    slf: *mut ffi::PyObject,
) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: guaranteed by the caller; PyCFunction_NewEx only reads `def` and increfs `slf`.
    unsafe {
        let f = ffi::PyCFunction_NewEx(def.0.get(), slf, ptr::null_mut());
        Bound::from_owned_ptr_or_err(py, f)
    }
}

/// A `PyMethodDef` in a static. CPython only reads it (from any interpreter), which is what makes
/// sharing it sound.
struct MethodDef(std::cell::UnsafeCell<ffi::PyMethodDef>);

// SAFETY: never written after construction; CPython reads it under each interpreter's GIL.
unsafe impl Sync for MethodDef {}

static START_RESPONSE_DEF: MethodDef = MethodDef(std::cell::UnsafeCell::new(ffi::PyMethodDef {
    ml_name: c"start_response".as_ptr(),
    ml_meth: ffi::PyMethodDefPointer {
        PyCFunctionFastWithKeywords: start_response,
    },
    ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
    ml_doc: c"start_response(status, response_headers, exc_info=None) (PEP 3333)".as_ptr(),
}));

static WRITE_DEF: MethodDef = MethodDef(std::cell::UnsafeCell::new(ffi::PyMethodDef {
    ml_name: c"write".as_ptr(),
    ml_meth: ffi::PyMethodDefPointer { PyCFunction: write },
    ml_flags: ffi::METH_O,
    ml_doc: c"write(data): the write callable returned by start_response (PEP 3333)".as_ptr(),
}));

/// Raises `exc` with `msg` and returns null (for returning from a C function).
///
/// # Safety
/// The GIL is held; `exc` is an exception type.
unsafe fn raise(exc: *mut ffi::PyObject, msg: &CStr) -> *mut ffi::PyObject {
    // SAFETY: guaranteed by the caller.
    unsafe { ffi::PyErr_SetString(exc, msg.as_ptr()) };
    ptr::null_mut()
}

/// The slot behind a capsule.
///
/// # Safety
/// `capsule` is one made by [`StartResponse::new`]; the GIL is held.
unsafe fn slot_of<'a>(capsule: *mut ffi::PyObject) -> &'a mut Slot {
    // SAFETY: guaranteed by the caller: the capsule holds a live Slot under our name.
    unsafe { &mut *ffi::PyCapsule_GetPointer(capsule, CAPSULE_NAME.as_ptr()).cast::<Slot>() }
}

unsafe extern "C" fn start_response(
    pair: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls this with the GIL held, `pair` the tuple (capsule, write) given at
    // creation, `args` holding `nargs` positional then `len(kwnames)` keyword values.
    unsafe {
        let nkw = if kwnames.is_null() {
            0
        } else {
            ffi::PyTuple_GET_SIZE(kwnames)
        };
        let mut exc_info: *mut ffi::PyObject = ptr::null_mut();
        for i in 0..nkw {
            let name = ffi::PyTuple_GET_ITEM(kwnames, i);
            if ffi::PyUnicode_CompareWithASCIIString(name, c"exc_info".as_ptr()) != 0 || nargs > 2 {
                return raise(
                    ffi::PyExc_TypeError,
                    c"start_response() got an unexpected keyword argument",
                );
            }
            exc_info = *args.offset(nargs + i);
        }
        if !(2..=3).contains(&nargs) {
            return raise(
                ffi::PyExc_TypeError,
                c"start_response() takes status, response_headers and an optional exc_info",
            );
        }
        if nargs == 3 {
            exc_info = *args.add(2);
        }
        let (status, headers) = (*args, *args.add(1));
        let slot = slot_of(ffi::PyTuple_GET_ITEM(pair, 0));
        if !exc_info.is_null() && exc_info != ffi::Py_None() {
            if slot.sent {
                // PEP 3333: the head is out, so the error cannot be reported any more: re-raise it.
                if ffi::PyTuple_Check(exc_info) == 0 || ffi::PyTuple_GET_SIZE(exc_info) != 3 {
                    return raise(
                        ffi::PyExc_TypeError,
                        c"exc_info must be a (type, value, traceback) tuple",
                    );
                }
                let (t, v, tb) = (
                    ffi::PyTuple_GET_ITEM(exc_info, 0),
                    ffi::PyTuple_GET_ITEM(exc_info, 1),
                    ffi::PyTuple_GET_ITEM(exc_info, 2),
                );
                ffi::Py_XINCREF(t);
                ffi::Py_XINCREF(v);
                ffi::Py_XINCREF(tb);
                // The one call that takes (type, value, traceback) on every supported version.
                #[allow(deprecated)]
                ffi::PyErr_Restore(t, v, tb);
                return ptr::null_mut();
            }
        } else if !slot.status.is_null() {
            return raise(
                ffi::PyExc_AssertionError,
                c"start_response() called a second time without exc_info",
            );
        }
        if ffi::PyUnicode_CheckExact(status) == 0 {
            return raise(ffi::PyExc_TypeError, c"status must be a str");
        }
        if ffi::PyList_CheckExact(headers) == 0 {
            return raise(ffi::PyExc_TypeError, c"response_headers must be a list");
        }
        ffi::Py_INCREF(status);
        ffi::Py_INCREF(headers);
        ffi::Py_XDECREF(std::mem::replace(&mut slot.status, status));
        ffi::Py_XDECREF(std::mem::replace(&mut slot.headers, headers));
        let write = ffi::PyTuple_GET_ITEM(pair, 1);
        ffi::Py_INCREF(write);
        write
    }
}

unsafe extern "C" fn write(
    capsule: *mut ffi::PyObject,
    data: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls this with the GIL held and `capsule` the `self` given at creation.
    unsafe {
        let slot = slot_of(capsule);
        if slot.status.is_null() {
            return raise(
                ffi::PyExc_AssertionError,
                c"write() called before start_response()",
            );
        }
        if ffi::PyBytes_CheckExact(data) == 0 {
            return raise(ffi::PyExc_TypeError, c"write() takes bytes");
        }
        slot.written_size += ffi::PyBytes_Size(data) as usize;
        if slot.written_size > WRITE_LIMIT {
            return raise(
                ffi::PyExc_RuntimeError,
                c"write() was given over 16 MiB in one call of the app; return an iterable instead (ringwsgi holds write() data until the app returns)",
            );
        }
        if slot.written.is_null() {
            slot.written = ffi::PyList_New(0);
            if slot.written.is_null() {
                return ptr::null_mut();
            }
        }
        if ffi::PyList_Append(slot.written, data) != 0 {
            return ptr::null_mut();
        }
        ffi::Py_INCREF(ffi::Py_None());
        ffi::Py_None()
    }
}

unsafe extern "C" fn drop_slot(capsule: *mut ffi::PyObject) {
    // SAFETY: called once by CPython when the capsule dies (GIL held); the pointer came from
    // Box::into_raw in `new`.
    unsafe {
        let slot = ffi::PyCapsule_GetPointer(capsule, CAPSULE_NAME.as_ptr()).cast::<Slot>();
        if !slot.is_null() {
            let mut slot = Box::from_raw(slot);
            slot.clear();
        }
    }
}
