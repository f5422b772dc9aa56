//! The body of the request being received, when it cannot simply stay in the connection's
//! input buffer: a chunked body (decoded as it arrives) or a body over the spool threshold
//! (written to an unlinked temporary file through the ring, so the core never blocks on disk).
//!
//! Bytes taken into an [`Incoming`] are drained from the input, so the input keeps only the
//! request head (parsed again once the body is complete) and whatever was pipelined behind it.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use crate::http::{ChunkError, ChunkedDecoder, HeadLimits};

/// Where and from which size request bodies go to disk.
#[derive(Debug, Clone)]
pub struct SpoolSettings {
    /// Bodies larger than this many bytes are spooled.
    pub threshold: usize,
    /// Directory of the temporary files (`None`: the system's temp dir).
    pub dir: Option<PathBuf>,
}

/// Why a body could not be received; answered with `status` and a close.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(transparent)]
    Chunked(#[from] ChunkError),
    #[error("cannot create a spool file: {0}")]
    Spool(std::io::Error),
}

impl BodyError {
    pub fn status(&self) -> u16 {
        match self {
            BodyError::Chunked(e) => e.status,
            BodyError::Spool(_) => 500,
        }
    }
}

/// A complete request body, ready for the app.
#[derive(Debug)]
pub enum Body {
    Memory(Vec<u8>),
    /// An unlinked temporary file holding the body from offset 0.
    File(File),
}

/// A body being received.
pub struct Incoming {
    decoder: Option<ChunkedDecoder>,
    /// Bytes still expected of a Content-Length body (unused for chunked bodies).
    remaining: u64,
    memory: Vec<u8>,
    spool: Option<Spool>,
    settings: SpoolSettings,
    /// Every byte of the body has arrived.
    done: bool,
}

struct Spool {
    file: Arc<File>,
    /// Bytes handed to the ring so far (the next write's offset).
    offset: u64,
    in_flight: usize,
    /// Writes to submit once the connection's buffers are no longer borrowed.
    queued: Vec<(u64, Vec<u8>)>,
    failed: bool,
}

impl Incoming {
    /// A chunked body, up to `limit` decoded bytes (0: no limit); trailers within `head`.
    pub fn chunked(limit: u64, head: &HeadLimits, settings: SpoolSettings) -> Self {
        Incoming {
            decoder: Some(ChunkedDecoder::with_limits(limit, head)),
            remaining: 0,
            memory: Vec::new(),
            spool: None,
            settings,
            done: false,
        }
    }

    /// A Content-Length body of `len` bytes, over the spool threshold.
    pub fn spooled(len: u64, settings: SpoolSettings) -> Result<Self, BodyError> {
        let mut incoming = Incoming {
            decoder: None,
            remaining: len,
            memory: Vec::new(),
            spool: None,
            settings,
            done: false,
        };
        incoming.start_spool()?;
        Ok(incoming)
    }

    fn start_spool(&mut self) -> Result<(), BodyError> {
        let file = match &self.settings.dir {
            Some(dir) => tempfile::tempfile_in(dir),
            None => tempfile::tempfile(),
        }
        .map_err(BodyError::Spool)?;
        self.spool = Some(Spool {
            file: Arc::new(file),
            offset: 0,
            in_flight: 0,
            queued: Vec::new(),
            failed: false,
        });
        Ok(())
    }

    /// Takes the body bytes at `input[from..]` (draining them). Returns true once every byte of
    /// the body has arrived (the spool writes may still be in flight: see [`Incoming::ready`]).
    pub fn take(&mut self, input: &mut Vec<u8>, from: usize) -> Result<bool, BodyError> {
        let available = &input[from..];
        let (taken, done) = match &mut self.decoder {
            Some(decoder) => {
                let taken = decoder.decode(available, &mut self.memory)?;
                (taken, decoder.is_done())
            }
            None => {
                let taken = available.len().min(self.remaining as usize);
                self.memory.extend_from_slice(&available[..taken]);
                self.remaining -= taken as u64;
                (taken, self.remaining == 0)
            }
        };
        input.drain(from..from + taken);
        if self.spool.is_none() && self.memory.len() > self.settings.threshold {
            self.start_spool()?;
        }
        if let Some(spool) = &mut self.spool {
            if !self.memory.is_empty() {
                let data = std::mem::take(&mut self.memory);
                spool.queued.push((spool.offset, data));
                spool.offset += spool.queued.last().map_or(0, |(_, d)| d.len() as u64);
            }
        }
        self.done = done;
        Ok(done)
    }

    /// Every byte of the body has arrived.
    pub fn done(&self) -> bool {
        self.done
    }

    /// Spool writes to submit: (file, offset, bytes).
    pub fn queued_writes(&mut self) -> Vec<(Arc<File>, u64, Vec<u8>)> {
        match &mut self.spool {
            Some(spool) => {
                spool.in_flight += spool.queued.len();
                let file = spool.file.clone();
                spool
                    .queued
                    .drain(..)
                    .map(|(offset, data)| (file.clone(), offset, data))
                    .collect()
            }
            None => Vec::new(),
        }
    }

    /// A spool write completed; false if it failed (the request cannot be served).
    pub fn written(&mut self, ok: bool) -> bool {
        if let Some(spool) = &mut self.spool {
            spool.in_flight = spool.in_flight.saturating_sub(1);
            spool.failed |= !ok;
            return !spool.failed;
        }
        true
    }

    /// True when no spool write is queued or in flight.
    pub fn settled(&self) -> bool {
        self.spool
            .as_ref()
            .is_none_or(|s| s.in_flight == 0 && s.queued.is_empty())
    }

    /// The body, once complete and settled.
    pub fn into_body(self) -> Body {
        match self.spool {
            Some(spool) => match Arc::try_unwrap(spool.file) {
                Ok(file) => Body::File(file),
                // Only the ring held other references, and every write has completed.
                Err(file) => Body::File(file.try_clone().expect("dup of the spool file")),
            },
            None => Body::Memory(self.memory),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(threshold: usize) -> SpoolSettings {
        SpoolSettings {
            threshold,
            dir: None,
        }
    }

    #[test]
    fn chunked_in_memory_drains_what_it_decodes() {
        let mut incoming = Incoming::chunked(0, &HeadLimits::default(), settings(1 << 20));
        let mut input = b"HEAD5\r\nhello\r\n0\r\n\r\nNEXT".to_vec();
        assert!(incoming.take(&mut input, 4).unwrap());
        assert_eq!(input, b"HEADNEXT");
        assert!(incoming.settled());
        assert!(matches!(incoming.into_body(), Body::Memory(b) if b == b"hello"));
    }

    #[test]
    fn large_bodies_queue_spool_writes_in_order() {
        let mut incoming = Incoming::spooled(10, settings(4)).unwrap();
        let mut input = b"H0123".to_vec();
        assert!(!incoming.take(&mut input, 1).unwrap());
        input.extend_from_slice(b"456789NEXT");
        assert!(incoming.take(&mut input, 1).unwrap());
        assert_eq!(input, b"HNEXT");
        let writes = incoming.queued_writes();
        assert_eq!(
            writes
                .iter()
                .map(|(_, o, d)| (*o, d.clone()))
                .collect::<Vec<_>>(),
            vec![(0, b"0123".to_vec()), (4, b"456789".to_vec())]
        );
        assert!(!incoming.settled());
        assert!(incoming.written(true));
        assert!(incoming.written(true));
        assert!(incoming.settled());
    }
}
