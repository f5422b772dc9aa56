//! `--threads N`: N Python threads of the worker's interpreter for apps that block on I/O.
//!
//! Only plain data crosses threads: the I/O thread sends a [`Job`] (the request head's bytes,
//! the body, the client) through a crossbeam channel; a pool thread parses the head again, calls
//! the app with its own [`Wsgi`] state (the app module itself is shared through `sys.modules`)
//! and sends back [`Reply`]s holding response bytes, waking the I/O loop. A streaming body is
//! sent one block at a time: the pool thread waits for the I/O thread's acknowledgement that the
//! previous block was sent (or that the client is gone) before it pulls the next.

use std::fs::File;
use std::thread::JoinHandle;
use std::time::SystemTime;

use crossbeam_channel::{Receiver, Sender};

use crate::http::{self, Client, DateCache, HeadLimits, Version};
use crate::io::{ConnId, Waker};
use crate::wsgi::{
    self, AppSettings, CallWatcher, FileBody, Input, InterpreterRef, Respond, ThreadState, Wsgi,
};

/// A complete request, as owned bytes.
pub struct Job {
    pub conn: ConnId,
    pub head: Vec<u8>,
    pub body: OwnedBody,
    /// Who the request is from (REMOTE_ADDR, REMOTE_PORT, wsgi.url_scheme).
    pub client: Client,
    /// False when the I/O thread decided the connection closes after this response (draining).
    pub keep_alive: bool,
}

/// A request body owned by a job.
pub enum OwnedBody {
    Bytes(Vec<u8>),
    File(File),
}

/// Response bytes for a connection, and what follows them.
pub struct Reply {
    pub conn: ConnId,
    pub bytes: Vec<u8>,
    pub end: ReplyEnd,
}

pub enum ReplyEnd {
    /// More of a streaming body follows once `ack` gets true (the bytes were sent) — or false
    /// (the connection is gone: the pool thread closes the iterable).
    More {
        ack: Sender<bool>,
    },
    Done {
        keep_alive: bool,
    },
    File {
        body: FileBody,
        keep_alive: bool,
    },
    /// Close without ending the body cleanly.
    Abort,
}

/// The pool threads of one worker.
pub struct Pool {
    jobs: Option<Sender<Job>>,
    pub replies: Receiver<Reply>,
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    /// Starts `n` threads running Python in `interpreter` (whose app is already loaded by the
    /// owning thread, so loading it again is a `sys.modules` lookup).
    /// `head_limits`: those the I/O thread parsed the heads with (each is parsed again here).
    pub fn start(
        n: usize,
        interpreter: InterpreterRef,
        settings: AppSettings,
        head_limits: HeadLimits,
        waker: Waker,
        watcher: Option<CallWatcher>,
    ) -> Pool {
        let (jobs_tx, jobs_rx) = crossbeam_channel::unbounded::<Job>();
        let (replies_tx, replies_rx) = crossbeam_channel::unbounded();
        let settings = std::sync::Arc::new(settings);
        let threads = (0..n)
            .map(|i| {
                let (jobs, replies, waker, settings, watcher) = (
                    jobs_rx.clone(),
                    replies_tx.clone(),
                    waker.clone(),
                    settings.clone(),
                    watcher.clone(),
                );
                std::thread::Builder::new()
                    .name(format!("ringwsgi-app-{i}"))
                    .spawn(move || {
                        serve_jobs(
                            interpreter,
                            &settings,
                            &head_limits,
                            &jobs,
                            &replies,
                            &waker,
                            watcher,
                        )
                    })
                    .expect("spawn a pool thread")
            })
            .collect();
        Pool {
            jobs: Some(jobs_tx),
            replies: replies_rx,
            threads,
        }
    }

    pub fn submit(&self, job: Job) {
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(job);
        }
    }

    /// Lets the threads finish their current job and end. Call detached: they need the GIL.
    pub fn shutdown(mut self) {
        self.jobs = None;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn serve_jobs(
    interpreter: InterpreterRef,
    settings: &AppSettings,
    head_limits: &HeadLimits,
    jobs: &Receiver<Job>,
    replies: &Sender<Reply>,
    waker: &Waker,
    watcher: Option<CallWatcher>,
) {
    let thread_state = ThreadState::new(interpreter);
    thread_state.attach(|py| {
        let mut wsgi = match Wsgi::load(py, settings) {
            Ok(w) => w,
            Err(e) => {
                tracing::error!("a pool thread cannot load the app: {e}");
                return;
            }
        };
        if let Some(watcher) = watcher {
            wsgi.watch_calls(watcher.watch(py));
        }
        let mut date = DateCache::new();
        let (ack_tx, ack_rx) = crossbeam_channel::bounded(1);
        while let Ok(job) = wsgi::detached(py, || jobs.recv()) {
            date.refresh(SystemTime::now());
            let conn = job.conn;
            let send = |bytes: Vec<u8>, end: ReplyEnd| {
                let _ = replies.send(Reply { conn, bytes, end });
                waker.wake();
            };
            let mut slots = http::new_header_slots();
            let mut out = Vec::new();
            let req = match http::parse_head(&job.head, &mut slots, head_limits) {
                Ok(req) => http::Request {
                    keep_alive: req.keep_alive && job.keep_alive,
                    ..req
                },
                Err(err) => {
                    // The I/O thread parsed this head already; this cannot happen.
                    http::write_error_response(&mut out, err.status, Version::Http11, &date);
                    send(out, ReplyEnd::Done { keep_alive: false });
                    continue;
                }
            };
            let input = match job.body {
                OwnedBody::Bytes(ref bytes) => Input::Bytes(bytes),
                OwnedBody::File(file) => Input::File(file),
            };
            let mut respond = wsgi.call(py, &req, input, job.client, &mut out, &date);
            loop {
                match respond {
                    Respond::Streaming(handle) => {
                        send(
                            std::mem::take(&mut out),
                            ReplyEnd::More {
                                ack: ack_tx.clone(),
                            },
                        );
                        if !wsgi::detached(py, || ack_rx.recv()).unwrap_or(false) {
                            wsgi.abandon(py, handle);
                            break;
                        }
                        respond = wsgi.resume(py, handle, &mut out);
                    }
                    Respond::Done { keep_alive } => break send(out, ReplyEnd::Done { keep_alive }),
                    Respond::SendFile { body, keep_alive } => {
                        break send(out, ReplyEnd::File { body, keep_alive })
                    }
                    Respond::Abort => break send(out, ReplyEnd::Abort),
                }
            }
        }
        wsgi.release(py);
    });
}
