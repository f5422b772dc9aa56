//! Native strings as PEP 3333 wants them: bytes from the wire become `str` by latin-1 decoding,
//! and `str` from the app becomes bytes by latin-1 encoding (anything else is an app error).

use std::borrow::Cow;

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

/// `bytes.decode("latin-1")` straight from a slice of the request buffer (one copy, into the str).
pub fn latin1<'py>(py: Python<'py>, bytes: &[u8]) -> Bound<'py, PyString> {
    // SAFETY: the pointer and length describe a live slice; PyUnicode_DecodeLatin1 copies it and
    // cannot fail on content (every byte is a latin-1 character). The only failure is out of
    // memory, which `from_owned_ptr` turns into a panic-free abort path only if null: checked.
    unsafe {
        let ptr = ffi::PyUnicode_DecodeLatin1(
            bytes.as_ptr().cast(),
            bytes.len() as ffi::Py_ssize_t,
            std::ptr::null(),
        );
        if ptr.is_null() {
            // Out of memory: an empty str keeps the request going; the error is cleared.
            ffi::PyErr_Clear();
            return PyString::new(py, "");
        }
        Bound::from_owned_ptr(py, ptr).cast_into_unchecked()
    }
}

/// The latin-1 bytes of an app-supplied `str` (status line, header names and values).
/// ASCII strings are borrowed without a copy.
pub fn latin1_bytes<'a>(obj: &'a Bound<'_, PyAny>) -> PyResult<Cow<'a, [u8]>> {
    let s = obj.cast::<PyString>().map_err(|_| {
        PyTypeError::new_err(format!(
            "expected str, got {}",
            obj.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })?;
    let utf8 = s.to_str()?;
    if utf8.is_ascii() {
        return Ok(Cow::Borrowed(utf8.as_bytes()));
    }
    // SAFETY: `s` is a live str; PyUnicode_AsLatin1String returns a new bytes object or null
    // with an exception set (a character above U+00FF), which PyErr::fetch takes.
    let encoded = unsafe {
        let ptr = ffi::PyUnicode_AsLatin1String(s.as_ptr());
        if ptr.is_null() {
            return Err(PyErr::fetch(obj.py()));
        }
        Bound::from_owned_ptr(obj.py(), ptr).cast_into_unchecked::<PyBytes>()
    };
    Ok(Cow::Owned(encoded.as_bytes().to_vec()))
}
