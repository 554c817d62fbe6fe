//! One core object shared by JS's thread and worker jobs, used by one call at a time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use napi::bindgen_prelude::{ToNapiValue, TypeName};

use crate::error::to_napi;
use crate::work::Work;

/// A stateful core object (an encoder, a decoder) behind the JS API. While an async call runs
/// on a worker, other calls fail with `ERR_HDE_BUSY` instead of silently reordering the stream.
pub struct Exclusive<T> {
    inner: Arc<Mutex<T>>,
    busy: Arc<AtomicBool>,
}

impl<T: Send + 'static> Exclusive<T> {
    pub fn new(value: T) -> Self {
        Exclusive {
            inner: Arc::new(Mutex::new(value)),
            busy: Arc::new(AtomicBool::new(false)),
        }
    }

    /// For synchronous calls on the JS thread.
    pub fn lock(&self) -> napi::Result<MutexGuard<'_, T>> {
        if self.busy.load(Ordering::Acquire) {
            return Err(busy_error());
        }
        lock_core(&self.inner).map_err(to_napi)
    }

    /// A worker job with exclusive use of the object until it ends, however it ends.
    pub fn job<R: ToNapiValue + TypeName + Send + 'static>(
        &self,
        f: impl FnOnce(&mut T) -> dwcp_hde::Result<R> + Send + 'static,
    ) -> napi::Result<Work<R>> {
        if self.busy.swap(true, Ordering::AcqRel) {
            return Err(busy_error());
        }
        let (inner, busy) = (Arc::clone(&self.inner), Arc::clone(&self.busy));
        Ok(Work::new(move || {
            let _release = Release(busy);
            f(&mut *lock_core(&inner)?)
        }))
    }
}

fn busy_error() -> napi::Error {
    napi::Error::from_reason("ERR_HDE_BUSY: a previous call has not finished; await it first")
}

/// Clears the busy flag when the worker is done, on every path.
struct Release(Arc<AtomicBool>);

impl Drop for Release {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// A poisoned lock means an earlier call panicked mid-stream: the stream is unusable.
pub fn lock_core<T>(m: &Mutex<T>) -> dwcp_hde::Result<MutexGuard<'_, T>> {
    m.lock()
        .map_err(|_| dwcp_hde::HdeError::Finished("stream (after an internal panic)"))
}
