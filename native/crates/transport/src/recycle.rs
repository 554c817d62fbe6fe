//! Buffers of received frames, used again once the consumer has dropped every piece of them.
//!
//! Each frame is read into a buffer of its own, and its payload goes to the consumer as a
//! slice of that buffer (no copy). Allocating those frame-sized buffers afresh cost more than
//! the copy they replace: glibc consolidates and trims its heap whenever a free leaves 64 KiB or
//! more free in one piece, and the kernel then zeroes the same pages again on the next
//! allocation. So buffers come back
//! here instead, up to a bound, while the transfer lasts.

use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;

/// Buffers kept for reuse, at most: with 64 KiB frames, 8 MiB per transfer.
const KEPT: usize = 128;

type Shelf = Mutex<Vec<Vec<u8>>>;

/// One transfer's spare frame buffers.
#[derive(Clone, Default)]
pub(crate) struct FrameBuffers(Arc<Shelf>);

impl FrameBuffers {
    /// An empty buffer with room for at least `len` bytes: a returned one if there is one.
    pub(crate) fn take(&self, len: usize) -> Vec<u8> {
        let mut buf = self
            .0
            .lock()
            .ok()
            .and_then(|mut shelf| shelf.pop())
            .unwrap_or_default();
        buf.clear();
        buf.reserve(len);
        buf
    }

    /// The filled buffer as `Bytes`; it comes back here when its last slice is dropped, or is
    /// freed if the transfer has ended by then.
    pub(crate) fn freeze(&self, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Recycled {
            buf,
            home: Arc::downgrade(&self.0),
        })
    }
}

struct Recycled {
    buf: Vec<u8>,
    home: Weak<Shelf>,
}

impl AsRef<[u8]> for Recycled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        let Some(home) = self.home.upgrade() else {
            return;
        };
        let Ok(mut shelf) = home.lock() else {
            return;
        };
        if shelf.len() < KEPT {
            shelf.push(std::mem::take(&mut self.buf));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_comes_back_once_every_slice_of_it_is_dropped() {
        let buffers = FrameBuffers::default();
        let mut buf = buffers.take(1000);
        buf.extend_from_slice(&[7u8; 1000]);
        let at = buf.as_ptr();
        let whole = buffers.freeze(buf);
        let part = whole.slice(10..20);
        drop(whole);
        let fresh = buffers.take(1);
        assert!(fresh.as_ptr() != at, "still in use by `part`");
        drop(part);
        let again = buffers.take(1000);
        assert_eq!((again.as_ptr(), again.len()), (at, 0));
        let ended = FrameBuffers::default();
        let orphan = ended.freeze(vec![1, 2, 3]);
        drop(ended);
        assert_eq!(&orphan[..], &[1, 2, 3], "outlives its transfer");
    }
}
