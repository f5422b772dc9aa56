//! A connection's outgoing data, kept alike by the socket transports (`Uring`, `Epoll`): the
//! caller's output queue, the bytes being sent, and the segments a `send_file` queued before
//! them. Each transport moves the bytes its own way; the queue's rules live here once.

use std::collections::VecDeque;
use std::fs::File;

/// Output queued behind a `send_file`, sent in order before `Outgoing::output`.
pub(super) enum Segment {
    Bytes(Vec<u8>),
    File { file: File, offset: u64, len: u64 },
}

impl Segment {
    fn len(&self) -> usize {
        match self {
            Segment::Bytes(b) => b.len(),
            Segment::File { len, .. } => usize::try_from(*len).unwrap_or(usize::MAX),
        }
    }
}

#[derive(Default)]
pub(super) struct Outgoing {
    /// Caller-visible output queue.
    pub(super) output: Vec<u8>,
    /// Bytes being sent; `sent` of them are done. Separate from `output`, so the caller can
    /// append while a send is under way (`Uring`: the kernel reads it while its send is in
    /// flight).
    pub(super) inflight: Vec<u8>,
    pub(super) sent: usize,
    /// Segments to send (in order) before `output`; non-empty only after a `send_file`.
    pub(super) segments: VecDeque<Segment>,
    /// Something was sent since the last `Sent`: report `Sent` once all is sent.
    pub(super) notify: bool,
}

impl Outgoing {
    /// Queues `file` behind everything queued so far (the output becomes a segment of its
    /// own); `Sent` follows once it is out, also for `len == 0`.
    pub(super) fn queue_file(&mut self, file: File, offset: u64, len: u64) {
        if !self.output.is_empty() {
            let before = std::mem::take(&mut self.output);
            self.segments.push_back(Segment::Bytes(before));
        }
        self.segments.push_back(Segment::File { file, offset, len });
        self.notify = true;
    }

    /// Bytes queued or being sent, with `current` more (what is left of a file under way).
    pub(super) fn pending(&self, current: usize) -> usize {
        self.segments
            .iter()
            .fold(
                self.output.len() + self.inflight.len() - self.sent,
                |n, seg| n.saturating_add(seg.len()),
            )
            .saturating_add(current)
    }

    /// Empties everything (queued files close) for a slot's next connection, giving back
    /// buffers that grew beyond `keep` bytes. Only with no send in flight.
    pub(super) fn reset(&mut self, keep: usize) {
        self.output.clear();
        self.inflight.clear();
        self.sent = 0;
        self.segments.clear();
        self.notify = false;
        if self.output.capacity() > keep {
            self.output.shrink_to(0);
        }
        if self.inflight.capacity() > keep {
            self.inflight.shrink_to(0);
        }
    }
}
