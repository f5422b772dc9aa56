//! Turns what the app returned into response bytes: the head from start_response's status and
//! headers, then the body items framed by Content-Length, chunked encoding or connection close.
//!
//! The head is written only after the first non-empty body item (start_response may be called
//! lazily, from inside a generator), so an app that fails before that still gets a 500. A list or
//! tuple body is taken whole and gets a Content-Length. Any other iterable is parked (as a
//! [`Stream`]) after each non-empty item and resumed once the connection's output has drained:
//! each block leaves without waiting for the next, and a slow client holds a Python object, not
//! the core.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyIterator, PyList, PyString, PyTuple};

use super::start_response::{Saved, StartResponse};
use super::strings::latin1_bytes;
use crate::http::{self, DateCache, Framing, HeadWriter, Version};

/// Interned attribute names used on every request.
pub struct Names {
    pub close: Py<PyString>,
    pub filelike: Py<PyString>,
}

impl Names {
    pub fn new(py: Python<'_>) -> Self {
        let i = |s| PyString::intern(py, s).unbind();
        Names {
            close: i("close"),
            filelike: i("filelike"),
        }
    }
}

/// A response whose body is still being pulled from the app.
pub struct Stream {
    pub iter: Py<PyIterator>,
    pub result: Py<PyAny>,
    /// start_response's state for this response, restored before each resumption.
    pub saved: Saved,
    pub body: BodyWriter,
    pub keep_alive: bool,
}

/// Why a response failed; the message goes to the log.
pub enum Failure {
    /// A Python exception (its traceback is logged).
    Raised(PyErr),
    /// The app broke a PEP 3333 rule.
    Invalid(String),
}

impl From<PyErr> for Failure {
    fn from(err: PyErr) -> Self {
        Failure::Raised(err)
    }
}

/// Writes body bytes with the response's framing, enforcing the app's Content-Length.
pub struct BodyWriter {
    framing: Framing,
    /// False for HEAD, 1xx, 204 and 304: items are pulled (and close() called) but not sent.
    send: bool,
    /// For `Framing::Length`: bytes still to send.
    remaining: u64,
}

impl BodyWriter {
    fn new(framing: Framing, send: bool) -> Self {
        let remaining = match framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        BodyWriter {
            framing,
            send,
            remaining,
        }
    }

    /// The body length announced by Content-Length, when a body is sent with that framing.
    pub fn declared_len(&self) -> Option<u64> {
        match self.framing {
            Framing::Length(n) if self.send => Some(n),
            _ => None,
        }
    }

    /// Everything the Content-Length announced has been written.
    pub fn is_full(&self) -> bool {
        matches!(self.framing, Framing::Length(_)) && self.send && self.remaining == 0
    }

    pub fn write(&mut self, out: &mut Vec<u8>, data: &[u8]) {
        if !self.send || data.is_empty() {
            return;
        }
        match self.framing {
            Framing::Length(_) => {
                // More than the declared length is never sent (it would be read as the next response).
                let n = data.len().min(self.remaining as usize);
                out.extend_from_slice(&data[..n]);
                self.remaining -= n as u64;
            }
            Framing::Chunked => http::write_chunk(out, data),
            Framing::UntilClose => out.extend_from_slice(data),
            Framing::NoBody => {}
        }
    }

    /// Ends the body. Returns false when the connection must close to make a short body visible.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> bool {
        if !self.send {
            return true;
        }
        match self.framing {
            Framing::Length(_) => self.remaining == 0,
            Framing::Chunked => {
                http::write_last_chunk(out);
                true
            }
            Framing::UntilClose => false,
            Framing::NoBody => true,
        }
    }
}

/// The request facts the response depends on.
pub struct RequestInfo {
    pub version: Version,
    pub head: bool,
    pub keep_alive: bool,
}

/// Pulls from the app's iterator: every item when `all` (the body is a list or tuple, already
/// produced), otherwise up to and including the first non-empty item, because PEP 3333 forbids
/// holding a block back while the app produces the next one. Data passed to write() comes first.
/// Returns whether the iterator is exhausted.
pub fn pull<'py>(
    iter: &Bound<'py, PyIterator>,
    start_response: &mut StartResponse,
    all: bool,
    mut sink: impl FnMut(Bound<'py, PyBytes>),
) -> Result<bool, Failure> {
    let mut iter = iter.clone();
    if all {
        // The app has returned a list: every write() call happened already, and comes first.
        take_written(iter.py(), start_response, &mut sink)?;
    }
    loop {
        let next = iter.next();
        if !all {
            // A generator may call write() while it runs: its data precedes the item.
            take_written(iter.py(), start_response, &mut sink)?;
        }
        let Some(item) = next else { return Ok(true) };
        let bytes = item?.cast_into::<PyBytes>().map_err(|e| {
            Failure::Invalid(format!(
                "the app's iterable yielded {}, not bytes",
                e.into_inner()
                    .get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        })?;
        let nonempty = !bytes.as_bytes().is_empty();
        sink(bytes);
        if nonempty && !all {
            return Ok(false);
        }
    }
}

/// Moves what the app passed to write() (since the last call) to `sink`, in order.
fn take_written<'py>(
    py: Python<'py>,
    start_response: &mut StartResponse,
    sink: &mut dyn FnMut(Bound<'py, PyBytes>),
) -> PyResult<()> {
    if let Some(written) = start_response.take_written(py) {
        for item in written.cast_into::<PyList>()?.iter() {
            sink(item.cast_into::<PyBytes>()?);
        }
    }
    Ok(())
}

/// Writes the head from the app's start_response arguments and returns the body writer.
pub fn write_head(
    py: Python<'_>,
    out: &mut Vec<u8>,
    start_response: &mut StartResponse,
    req: &RequestInfo,
    known_len: Option<u64>,
    date: &DateCache,
) -> Result<(BodyWriter, bool), Failure> {
    let Some((status, headers)) = start_response.status_and_headers(py) else {
        return Err(Failure::Invalid(
            "the app did not call start_response()".into(),
        ));
    };
    let mut head = HeadWriter::new(out, req.version, &latin1_bytes(&status)?)
        .map_err(|e| Failure::Invalid(e.to_string()))?;
    for item in headers.cast_into::<PyList>().map_err(PyErr::from)?.iter() {
        let pair = match item.cast::<PyTuple>() {
            Ok(t) if t.len() == 2 => t,
            _ => {
                head.abort();
                return Err(Failure::Invalid(format!(
                    "response header {item} is not a (name, value) tuple"
                )));
            }
        };
        let (name, value) = (pair.get_item(0)?, pair.get_item(1)?);
        let (name, value) = match (latin1_bytes(&name), latin1_bytes(&value)) {
            (Ok(n), Ok(v)) => (n, v),
            (Err(e), _) | (_, Err(e)) => {
                head.abort();
                return Err(e.into());
            }
        };
        if let Err(e) = head.header(&name, &value) {
            head.abort();
            return Err(Failure::Invalid(e.to_string()));
        }
    }
    let send = http::response::status_has_body(head.status_code(), req.head);
    let framing = match http::choose_framing(req.version, head.content_length(), known_len) {
        // HEAD keeps a known Content-Length, but never announces a body it does not send.
        Framing::Chunked | Framing::UntilClose if !send => Framing::NoBody,
        framing => framing,
    };
    let keep_alive = req.keep_alive && framing != Framing::UntilClose;
    head.finish(framing, keep_alive, req.version, date);
    Ok((BodyWriter::new(framing, send), keep_alive))
}

/// Calls the iterable's close(), if it has one (PEP 3333: exactly once, whatever happened).
pub fn close_iterable(result: &Bound<'_, PyAny>, names: &Names) -> PyResult<()> {
    if let Some(close) = result.getattr_opt(names.close.bind(result.py()))? {
        close.call0()?;
    }
    Ok(())
}

/// A file to send straight from its descriptor.
#[derive(Debug)]
pub struct FileBody {
    pub file: std::fs::File,
    pub offset: u64,
    pub len: u64,
}

/// The open regular file behind a `wsgi.file_wrapper` result, from its current position to its
/// end, as a duplicated descriptor (the app's file object can be closed at once). `None` when the
/// file-like object has no usable descriptor: the wrapper is then iterated like any body.
pub fn wrapped_file(wrapper: &Bound<'_, PyAny>, names: &Names) -> Option<FileBody> {
    let filelike = wrapper.getattr(names.filelike.bind(wrapper.py())).ok()?;
    let fd: std::os::fd::RawFd = filelike.call_method0("fileno").ok()?.extract().ok()?;
    let offset: u64 = filelike.call_method0("tell").ok()?.extract().ok()?;
    // SAFETY: `fd` belongs to `filelike`, which is alive (and not closed: fileno() just answered)
    // for the whole borrow, which ends within this function.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let stat = nix::sys::stat::fstat(borrowed).ok()?;
    if stat.st_mode & libc::S_IFMT != libc::S_IFREG {
        return None;
    }
    let file = std::fs::File::from(nix::unistd::dup(borrowed).ok()?);
    Some(FileBody {
        file,
        offset,
        len: (stat.st_size as u64).saturating_sub(offset),
    })
}
