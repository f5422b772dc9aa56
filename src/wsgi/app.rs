//! One interpreter's WSGI state: the loaded app, its environ builder, and the responses still
//! streaming. All of it is Python objects, so it lives on the worker thread that owns the
//! interpreter and is released there, attached ([`Wsgi::release`]).

use std::ffi::CString;
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyModule, PyString, PyTuple};

use super::environ::{EnvironBuilder, EnvironSettings, Input};
use super::response::{self, Failure, FileBody, Names, RequestInfo, Stream};
use super::start_response::StartResponse;
use super::table::{Handle, Table};
use super::watchdog::CallTimer;
use crate::http::{self, Client, DateCache, Request};

const BOOTSTRAP: &str = include_str!("bootstrap.py");

/// What loading the app needs.
pub struct AppSettings {
    /// MODULE:APP or MODULE:FACTORY().
    pub spec: String,
    /// Put at the front of sys.path, in order.
    pub sys_path: Vec<String>,
    pub environ: EnvironSettings,
}

/// The app could not be loaded: one line for the user.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct LoadError {
    pub message: String,
    /// The package of the extension module that refused to load in a subinterpreter, when
    /// that is why (`--mode process` would load it).
    pub refused_by: Option<String>,
}

impl LoadError {
    fn new(message: String) -> Self {
        LoadError {
            message,
            refused_by: None,
        }
    }
}

/// Time spent in the stages of the calls (when timing is on, for `--stats`).
#[derive(Debug, Default, Clone, Copy)]
pub struct CallTimes {
    /// Building the environ.
    pub environ: Duration,
    /// The app call, until it returns (start_response included).
    pub app: Duration,
    /// Iterating the body and encoding the response.
    pub body: Duration,
}

/// The first step of a response.
enum First {
    /// Head and whole body queued; close() is due.
    Complete {
        keep_alive: bool,
    },
    /// Head queued, the body is a file sent from its descriptor; close() is due.
    File {
        body: FileBody,
        keep_alive: bool,
    },
    Streaming(Handle),
}

/// What the connection does after a call or a resumed stream.
#[derive(Debug)]
pub enum Respond {
    /// The whole response is in the output buffer.
    Done { keep_alive: bool },
    /// The head is in the output buffer; the body is this file range, to be sent from the
    /// descriptor (`wsgi.file_wrapper`).
    SendFile { body: FileBody, keep_alive: bool },
    /// The head and the first part of the body are in the output buffer; call
    /// [`Wsgi::resume`] with this handle once the output has drained.
    Streaming(Handle),
    /// The response broke after part of it was queued: close the connection without ending the
    /// body cleanly, so the client sees the truncation.
    Abort,
}

struct State {
    app: Py<PyAny>,
    start_response: StartResponse,
    file_wrapper: Py<PyAny>,
    format_exception: Py<PyAny>,
    environ: EnvironBuilder,
    names: Names,
    streams: Table<Stream>,
    /// Stage times, when asked for.
    times: Option<CallTimes>,
    /// Length of the response head the last call queued (None: the call failed and was
    /// answered with an error response), so the access log need not look for its end.
    head_len: Option<usize>,
}

/// The WSGI side of one worker. Drop it only through [`Wsgi::release`].
pub struct Wsgi {
    state: Option<State>,
    /// `--timeout`: publishes the calls to the watchdog.
    timer: Option<CallTimer>,
}

impl Wsgi {
    /// Runs the bootstrap module and loads the app in the current interpreter.
    pub fn load(py: Python<'_>, settings: &AppSettings) -> Result<Wsgi, LoadError> {
        let bootstrap =
            run_bootstrap(py).map_err(|e| LoadError::new(format!("bootstrap failed: {e}")))?;
        let load_app = bootstrap
            .getattr("load_app")
            .map_err(|e| LoadError::new(e.to_string()))?;
        let app = load_app
            .call1((
                settings.spec.as_str(),
                PyList::new(py, &settings.sys_path).map_err(|e| LoadError::new(e.to_string()))?,
            ))
            .map_err(|e| {
                let is_load_error = bootstrap
                    .getattr("LoadError")
                    .is_ok_and(|cls| e.is_instance(py, &cls));
                if is_load_error {
                    LoadError {
                        message: e.value(py).to_string(),
                        refused_by: e
                            .value(py)
                            .getattr("refused_by")
                            .and_then(|name| name.extract::<Option<String>>())
                            .unwrap_or(None),
                    }
                } else {
                    LoadError::new(format!("cannot load '{}': {e}", settings.spec))
                }
            })?;
        let state = (|| -> PyResult<State> {
            let file_wrapper = bootstrap.getattr("FileWrapper")?;
            Ok(State {
                app: app.unbind(),
                start_response: StartResponse::new(py)?,
                environ: EnvironBuilder::new(py, &settings.environ, &file_wrapper)?,
                file_wrapper: file_wrapper.unbind(),
                format_exception: bootstrap.getattr("format_exception")?.unbind(),
                names: Names::new(py),
                streams: Table::default(),
                times: None,
                head_len: None,
            })
        })()
        .map_err(|e| LoadError::new(format!("cannot set up the worker: {e}")))?;
        Ok(Wsgi {
            state: Some(state),
            timer: None,
        })
    }

    /// Lets the watchdog interrupt this thread's calls that run longer than `--timeout`.
    pub fn watch_calls(&mut self, timer: CallTimer) {
        self.timer = Some(timer);
    }

    /// Starts timing the stages of every call ([`Wsgi::times`]).
    pub fn enable_timing(&mut self) {
        self.state().times = Some(CallTimes::default());
    }

    /// Stage times so far (zero unless timing is on).
    pub fn times(&self) -> CallTimes {
        self.state
            .as_ref()
            .and_then(|s| s.times)
            .unwrap_or_default()
    }

    /// Length of the response head the last [`Wsgi::call`] queued (None if it failed).
    pub fn head_len(&self) -> Option<usize> {
        self.state.as_ref().and_then(|s| s.head_len)
    }

    fn state(&mut self) -> &mut State {
        self.state.as_mut().expect("Wsgi used after release")
    }

    /// Calls the app for one request and queues its response (or the start of it) in `out`.
    /// A failure before the head was queued is answered with a 500 and logged with its traceback.
    #[allow(clippy::too_many_arguments)]
    pub fn call(
        &mut self,
        py: Python<'_>,
        req: &Request<'_, '_>,
        body: Input<'_>,
        client: Client,
        out: &mut Vec<u8>,
        date: &DateCache,
    ) -> Respond {
        let start = out.len();
        let info = RequestInfo {
            version: req.version,
            head: req.method == "HEAD",
            keep_alive: req.keep_alive,
        };
        let Wsgi { state, timer } = self;
        let state = state.as_mut().expect("Wsgi used after release");
        if let Some(timer) = timer {
            timer.begin();
        }
        state.head_len = None;
        let called = state.call(py, req, body, client, out, date, &info);
        let timed_out = timer.as_mut().is_some_and(|t| t.end(py));
        match called {
            Ok(respond) => respond,
            Err(failure) => {
                state.log_failure(py, &failure, req.method, req.target);
                out.truncate(start);
                state.head_len = None;
                let status = if timed_out {
                    tracing::error!(
                        "request {} {} timed out (--timeout): interrupted, answered 504",
                        req.method,
                        String::from_utf8_lossy(req.target)
                    );
                    504
                } else {
                    500
                };
                http::write_error_response(out, status, req.version, date);
                Respond::Done { keep_alive: false }
            }
        }
    }

    /// Pulls the next part of a streaming body into `out` (its output has drained). A
    /// `Streaming` answer always comes with bytes queued in `out`.
    pub fn resume(&mut self, py: Python<'_>, handle: Handle, out: &mut Vec<u8>) -> Respond {
        let Wsgi { state, timer } = self;
        let state = state.as_mut().expect("Wsgi used after release");
        let Some(stream) = state.streams.get_mut(handle) else {
            return Respond::Abort;
        };
        if let Some(timer) = timer {
            timer.begin();
        }
        let iter = stream.iter.bind(py).clone();
        // This response is the current one again (exc_info re-raises, write() lands here).
        state.start_response.restore(py, &stream.saved);
        let body = &mut stream.body;
        let start = out.len();
        let pulled = loop {
            let pulled = response::pull(&iter, &mut state.start_response, false, |b| {
                body.write(out, b.as_bytes())
            });
            // A body that has sent all of its Content-Length is over: the app's extra items are
            // not pulled (nor sent), and close() follows now.
            let pulled = pulled.map(|exhausted| exhausted || body.is_full());
            // A step that queued nothing (a body that is not sent: 204, 304) would bring no
            // `Sent` to resume on: go on pulling.
            if !matches!(pulled, Ok(false)) || out.len() > start {
                break pulled;
            }
        };
        let timed_out = timer.as_mut().is_some_and(|t| t.end(py));
        match pulled {
            Ok(false) => Respond::Streaming(handle),
            Ok(true) => {
                let mut stream = state.streams.remove(handle).expect("present above");
                let complete = stream.body.finish(out);
                let closed = state.close(py, stream.result.bind(py));
                if complete && closed {
                    Respond::Done {
                        keep_alive: stream.keep_alive,
                    }
                } else {
                    Respond::Done { keep_alive: false }
                }
            }
            Err(failure) => {
                state.log_failure(py, &failure, "", b"(streaming body)");
                if timed_out {
                    tracing::error!(
                        "a streaming response timed out (--timeout): interrupted, connection closed"
                    );
                }
                if let Some(stream) = state.streams.remove(handle) {
                    state.close(py, stream.result.bind(py));
                }
                Respond::Abort
            }
        }
    }

    /// The connection of a streaming response is gone: close the app's iterable.
    pub fn abandon(&mut self, py: Python<'_>, handle: Handle) {
        let state = self.state();
        if let Some(stream) = state.streams.remove(handle) {
            state.close(py, stream.result.bind(py));
        }
    }

    /// Releases every Python object (closing streams still open). Must run attached, on the
    /// interpreter's thread, before the interpreter ends.
    pub fn release(mut self, py: Python<'_>) {
        if let Some(mut state) = self.state.take() {
            let streams: Vec<Stream> = state.streams.drain().collect();
            for stream in streams {
                state.close(py, stream.result.bind(py));
            }
            drop(state);
        }
    }
}

impl Drop for Wsgi {
    fn drop(&mut self) {
        // Dropping Python objects while detached aborts the process (no reference pool): when
        // `release` was not called (a panic unwinding), leak them instead.
        if let Some(state) = self.state.take() {
            std::mem::forget(state);
        }
    }
}

impl State {
    #[allow(clippy::too_many_arguments)]
    fn call(
        &mut self,
        py: Python<'_>,
        req: &Request<'_, '_>,
        body: Input<'_>,
        client: Client,
        out: &mut Vec<u8>,
        date: &DateCache,
        info: &RequestInfo,
    ) -> Result<Respond, Failure> {
        let started = self.times.map(|_| Instant::now());
        let environ = self.environ.build(py, req, body, client)?;
        let built = started.map(|_| Instant::now());
        self.start_response.reset(py);
        let result = self
            .app
            .bind(py)
            .call1((environ, self.start_response.callable(py)))?;
        let returned = started.map(|_| Instant::now());
        let responded = self.respond(&result, out, date, info);
        if let (Some(times), Some(t0), Some(t1), Some(t2)) =
            (&mut self.times, started, built, returned)
        {
            times.environ += t1 - t0;
            times.app += t2 - t1;
            times.body += t2.elapsed();
        }
        match responded {
            Ok(First::Streaming(handle)) => Ok(Respond::Streaming(handle)),
            Ok(First::Complete { keep_alive }) => {
                let closed = self.close(py, &result);
                Ok(Respond::Done {
                    keep_alive: keep_alive && closed,
                })
            }
            Ok(First::File { body, keep_alive }) => {
                // The descriptor was duplicated: the app's file can be closed now.
                let closed = self.close(py, &result);
                Ok(Respond::SendFile {
                    body,
                    keep_alive: keep_alive && closed,
                })
            }
            Err(failure) => {
                // close() is still owed; the failure itself is what gets reported.
                let _ = response::close_iterable(&result, &self.names);
                Err(failure)
            }
        }
    }

    /// Writes the head and the first part of the body.
    fn respond(
        &mut self,
        result: &Bound<'_, PyAny>,
        out: &mut Vec<u8>,
        date: &DateCache,
        info: &RequestInfo,
    ) -> Result<First, Failure> {
        let py = result.py();
        if result.is_instance_of::<PyBytes>() || result.is_instance_of::<PyString>() {
            return Err(Failure::Invalid(format!(
                "the app returned a bare {} object; it must return an iterable of bytes (e.g. [body])",
                result.get_type().name()?
            )));
        }
        if result.get_type().is(self.file_wrapper.bind(result.py())) {
            if let Some(file) = response::wrapped_file(result, &self.names) {
                return self.respond_file(py, file, out, date, info);
            }
        }
        let iter = result.try_iter()?;
        let whole =
            result.is_exact_instance_of::<PyList>() || result.is_exact_instance_of::<PyTuple>();
        let mut items: Vec<Bound<'_, PyBytes>> = Vec::new();
        let mut total = 0;
        let exhausted = response::pull(&iter, &mut self.start_response, whole, |b| {
            total += b.as_bytes().len() as u64;
            items.push(b)
        })?;
        let known_len = exhausted.then_some(total);
        let head_start = out.len();
        let (mut body, keep_alive) =
            response::write_head(py, out, &mut self.start_response, info, known_len, date)?;
        self.head_len = Some(out.len() - head_start);
        for item in &items {
            body.write(out, item.as_bytes());
        }
        // A body that delivered all of its Content-Length is complete without pulling further
        // (a framework's one-item iterator then costs no second round).
        if exhausted || body.is_full() {
            let complete = body.finish(out);
            return Ok(First::Complete {
                keep_alive: keep_alive && complete,
            });
        }
        if info.head {
            // No body is sent for HEAD: stop iterating (close() follows).
            return Ok(First::Complete { keep_alive });
        }
        self.start_response.mark_sent(py);
        let handle = self.streams.insert(Stream {
            iter: iter.unbind(),
            result: result.clone().unbind(),
            saved: self.start_response.save(py),
            body,
            keep_alive,
        });
        Ok(First::Streaming(handle))
    }

    /// The head for a file sent from its descriptor; the app's Content-Length, if any, bounds it.
    fn respond_file(
        &mut self,
        py: Python<'_>,
        mut file: FileBody,
        out: &mut Vec<u8>,
        date: &DateCache,
        info: &RequestInfo,
    ) -> Result<First, Failure> {
        let head_start = out.len();
        let (body, keep_alive) = response::write_head(
            py,
            out,
            &mut self.start_response,
            info,
            Some(file.len),
            date,
        )?;
        self.head_len = Some(out.len() - head_start);
        let Some(declared) = body.declared_len() else {
            // HEAD, 204, 304: no body.
            return Ok(First::Complete { keep_alive });
        };
        let short = declared > file.len;
        file.len = file.len.min(declared);
        Ok(First::File {
            body: file,
            keep_alive: keep_alive && !short,
        })
    }

    /// Calls close() on the app's iterable; false (and logged) if it raised.
    fn close(&self, py: Python<'_>, result: &Bound<'_, PyAny>) -> bool {
        match response::close_iterable(result, &self.names) {
            Ok(()) => true,
            Err(err) => {
                self.log_failure(
                    py,
                    &Failure::Raised(err),
                    "",
                    b"(close() of the response iterable)",
                );
                false
            }
        }
    }

    fn log_failure(&self, py: Python<'_>, failure: &Failure, method: &str, target: &[u8]) {
        let target = String::from_utf8_lossy(target);
        match failure {
            Failure::Raised(err) => {
                let traceback = self
                    .format_exception
                    .bind(py)
                    .call1((err.value(py),))
                    .and_then(|t| t.extract::<String>())
                    .unwrap_or_else(|_| err.to_string());
                tracing::error!("error handling request {method} {target}:\n{traceback}");
            }
            Failure::Invalid(msg) => {
                tracing::error!("error handling request {method} {target}: {msg}")
            }
        }
    }
}

/// Runs bootstrap.py as a fresh module of this interpreter (never imported from the package).
fn run_bootstrap(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    let code = CString::new(BOOTSTRAP).expect("bootstrap.py has no NUL");
    PyModule::from_code(py, &code, c"<ringwsgi bootstrap>", c"_ringwsgi_bootstrap")
}
