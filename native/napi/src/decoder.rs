//! `HdeDecoder`: stream bytes in, verified raw bytes out.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use dwcp_hde::{Decoder, DecoderStats};
use napi::bindgen_prelude::{AbortSignal, AsyncTask, Buffer};
use napi_derive::napi;

use crate::encoder::{busy_error, lock_core, Release};
use crate::error::{guard, to_napi};
use crate::store::{BindingChunkStore, SharedStore};
use crate::work::Work;

/// Counters of one decoded stream.
#[napi(object)]
pub struct BindingDecoderStats {
    pub bytes_in: f64,
    pub bytes_out: f64,
    pub chunks_received: f64,
    pub chunks_reused: f64,
}

#[allow(clippy::cast_precision_loss)]
impl From<DecoderStats> for BindingDecoderStats {
    fn from(s: DecoderStats) -> Self {
        BindingDecoderStats {
            bytes_in: s.bytes_in as f64,
            bytes_out: s.bytes_out as f64,
            chunks_received: s.chunks_received as f64,
            chunks_reused: s.chunks_reused as f64,
        }
    }
}

/// Decodes one stream. With a store, received chunks are kept there and references are
/// resolved from it; without, this stream's chunks are held in memory.
#[napi(js_name = "HdeDecoder")]
pub struct BindingDecoder {
    inner: Arc<Mutex<Decoder>>,
    busy: Arc<AtomicBool>,
}

#[napi]
impl BindingDecoder {
    #[napi(constructor)]
    pub fn new(store: Option<&BindingChunkStore>) -> Self {
        let decoder = match store {
            Some(s) => Decoder::new(Box::new(SharedStore(Arc::clone(&s.inner)))),
            None => Decoder::in_memory(),
        };
        BindingDecoder {
            inner: Arc::new(Mutex::new(decoder)),
            busy: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Consumes stream bytes; returns the raw bytes they complete.
    #[napi(catch_unwind)]
    pub fn push_sync(&self, data: Buffer) -> napi::Result<Buffer> {
        self.idle()?;
        guard(|| {
            let mut out = Vec::with_capacity(data.len() * 2);
            lock_core(&self.inner)?.push(&data, &mut out)?;
            Ok(out.into())
        })
    }

    /// [`push_sync`](Self::push_sync) on a worker thread.
    #[napi(ts_return_type = "Promise<Buffer>")]
    pub fn push(
        &self,
        data: Buffer,
        signal: Option<AbortSignal>,
    ) -> napi::Result<AsyncTask<Work<Buffer>>> {
        if self.busy.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return Err(busy_error());
        }
        let (inner, busy) = (Arc::clone(&self.inner), Arc::clone(&self.busy));
        Ok(AsyncTask::with_optional_signal(
            Work::new(move || {
                let _release = Release(busy);
                let mut out = Vec::with_capacity(data.len() * 2);
                lock_core(&inner)?.push(&data, &mut out)?;
                Ok(out.into())
            }),
            signal,
        ))
    }

    /// Checks the stream ended with a verified END record.
    #[napi(catch_unwind)]
    pub fn finish(&self) -> napi::Result<()> {
        self.idle()?;
        guard(|| lock_core(&self.inner)?.finish())
    }

    #[napi]
    pub fn stats(&self) -> napi::Result<BindingDecoderStats> {
        Ok(lock_core(&self.inner).map_err(to_napi)?.stats().into())
    }

    fn idle(&self) -> napi::Result<()> {
        if self.busy.load(std::sync::atomic::Ordering::Acquire) {
            return Err(busy_error());
        }
        Ok(())
    }
}
