//! `HdeDecoder`: stream bytes in, verified raw bytes out.

use std::sync::Arc;

use dwcp_hde::{ChunkId, Decoder, DecoderStats};
use napi::bindgen_prelude::{AbortSignal, AsyncTask, Buffer};
use napi_derive::napi;

use crate::error::{guard, to_napi};
use crate::exclusive::Exclusive;
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
    core: Exclusive<Decoder>,
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
            core: Exclusive::new(decoder),
        }
    }

    /// Threads for decompression and verification from the next push on, 1..=64 (default 1).
    #[napi(catch_unwind)]
    pub fn set_threads(&self, threads: u32) -> napi::Result<()> {
        self.core
            .lock()?
            .set_threads(threads as usize)
            .map_err(to_napi)
    }

    /// The ordered hex ids the encoder's `markPresent` got before its first push: a
    /// `split: 'pages'` stream refers to them by index and names the list it expects.
    #[napi(catch_unwind)]
    pub fn set_held(&self, ids: Vec<String>) -> napi::Result<()> {
        let parsed = ids
            .iter()
            .map(|s| ChunkId::from_hex(s))
            .collect::<dwcp_hde::Result<Vec<_>>>()
            .map_err(to_napi)?;
        self.core.lock()?.set_held(parsed);
        Ok(())
    }

    /// Consumes stream bytes; returns the raw bytes they complete.
    #[napi(catch_unwind)]
    pub fn push_sync(&self, data: Buffer) -> napi::Result<Buffer> {
        let mut decoder = self.core.lock()?;
        guard(|| push(&mut decoder, &data))
    }

    /// [`push_sync`](Self::push_sync) on a worker thread.
    #[napi(ts_return_type = "Promise<Buffer>")]
    pub fn push(
        &self,
        data: Buffer,
        signal: Option<AbortSignal>,
    ) -> napi::Result<AsyncTask<Work<Buffer>>> {
        let job = self.core.job(move |decoder| push(decoder, &data))?;
        Ok(AsyncTask::with_optional_signal(job, signal))
    }

    /// Checks the stream ended with a verified END record.
    #[napi(catch_unwind)]
    pub fn finish(&self) -> napi::Result<()> {
        let mut decoder = self.core.lock()?;
        guard(|| decoder.finish())
    }

    #[napi]
    pub fn stats(&self) -> napi::Result<BindingDecoderStats> {
        Ok(self.core.lock()?.stats().into())
    }
}

fn push(decoder: &mut Decoder, data: &[u8]) -> dwcp_hde::Result<Buffer> {
    let mut out = Vec::with_capacity(data.len() * 2);
    decoder.push(data, &mut out)?;
    Ok(out.into())
}
