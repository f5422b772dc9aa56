//! Memory shared between the master and its worker processes: a memfd mapped `MAP_SHARED`,
//! seen as an array of 64-bit atomic words (zeroed when created).
//!
//! The master creates it before it starts worker processes and passes the descriptor on by
//! inheritance; each worker process maps the same pages, so what a worker stores the master
//! reads without a copy, a lock or a message. Any bit pattern is a valid `AtomicU64`, so the
//! words are safe to read whatever another process wrote.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;

use nix::sys::stat::fstat;
use nix::unistd::ftruncate;

/// A shared mapping of `words` atomic 64-bit words.
pub struct SharedMemory {
    ptr: NonNull<AtomicU64>,
    words: usize,
    fd: OwnedFd,
}

// SAFETY: the mapping is only reached through `&[AtomicU64]`, which is Sync (every access is
// atomic), and it stays mapped until the owner drops it; nothing is tied to the creating thread.
unsafe impl Send for SharedMemory {}
// SAFETY: as above: shared references only ever hand out atomics.
unsafe impl Sync for SharedMemory {}

impl SharedMemory {
    /// Creates zeroed shared memory of `words` words. Its descriptor is inheritable (no
    /// CLOEXEC): every child process started afterwards receives it.
    pub fn create(name: &std::ffi::CStr, words: usize) -> io::Result<SharedMemory> {
        let len = words
            .checked_mul(size_of::<AtomicU64>())
            .filter(|&len| len > 0)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad size"))?;
        // SAFETY: `name` is a valid NUL-terminated string; memfd_create only reads it. The
        // result is checked before it is owned.
        let raw = unsafe { libc::memfd_create(name.as_ptr(), 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor owned by nobody else.
        let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
        ftruncate(&fd, len as libc::off_t)?;
        Self::map(fd, len)
    }

    /// Maps shared memory whose descriptor was inherited (`fd` must be open and owned by
    /// nobody else in this process); sets CLOEXEC so the app's subprocesses do not get it.
    pub fn adopt(fd: RawFd) -> io::Result<SharedMemory> {
        let fd = super::adopt_fd(fd)?;
        let len = fstat(&fd)?.st_size as usize;
        if len == 0 || len % size_of::<AtomicU64>() != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "shared memory of a wrong size",
            ));
        }
        Self::map(fd, len)
    }

    fn map(fd: OwnedFd, len: usize) -> io::Result<SharedMemory> {
        // SAFETY: a new shared mapping of `len` bytes of a file at least that long (its size was
        // set or read above); no existing memory is touched. The result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<AtomicU64>()).ok_or_else(io::Error::last_os_error)?;
        Ok(SharedMemory {
            ptr,
            words: len / size_of::<AtomicU64>(),
            fd,
        })
    }

    /// The words.
    pub fn words(&self) -> &[AtomicU64] {
        // SAFETY: the mapping is page-aligned (so aligned for AtomicU64), `words` words long and
        // lives as long as `self`; every bit pattern is a valid AtomicU64, and all access through
        // the slice is atomic, so other processes writing concurrently is no data race.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.words) }
    }

    /// The descriptor, to name it to a child process (it is inherited).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for SharedMemory {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `map`; no reference into it outlives `self`
        // (`words` borrows `self`).
        unsafe {
            libc::munmap(
                self.ptr.as_ptr().cast(),
                self.words * size_of::<AtomicU64>(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn a_second_mapping_sees_the_same_words() {
        let shm = SharedMemory::create(c"test", 16).unwrap();
        assert_eq!(shm.words().len(), 16);
        assert!(shm.words().iter().all(|w| w.load(Ordering::Relaxed) == 0));
        shm.words()[3].store(42, Ordering::Relaxed);
        let dup = nix::unistd::dup(shm.fd()).unwrap();
        let other = SharedMemory::adopt(std::os::fd::IntoRawFd::into_raw_fd(dup)).unwrap();
        assert_eq!(other.words().len(), 16);
        assert_eq!(other.words()[3].load(Ordering::Relaxed), 42);
        other.words()[5].store(7, Ordering::Relaxed);
        assert_eq!(shm.words()[5].load(Ordering::Relaxed), 7);
    }
}
