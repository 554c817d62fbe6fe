//! `HdeEncoder`: a whole buffer in, whole records out; no per-chunk call crosses into JS.

use dwcp_hde::{ChunkId, ChunkerParams, CodecLevel, Encoder, EncoderStats, HdeError, Split};
use napi::bindgen_prelude::{AbortSignal, AsyncTask, Buffer};
use napi_derive::napi;

use crate::error::{guard, to_napi};
use crate::exclusive::Exclusive;
use crate::options::{BindingChunkerOptions, BindingCodecOptions};
use crate::work::Work;

/// Counters of one encoded stream. Byte counts are exact up to 2^53.
#[napi(object)]
pub struct BindingEncoderStats {
    pub bytes_in: f64,
    pub bytes_out: f64,
    pub chunks: f64,
    pub dedup_chunks: f64,
    pub dedup_bytes: f64,
    pub sent_raw_bytes: f64,
    pub sent_frame_bytes: f64,
}

// Counters stay far below 2^53, where f64 is exact.
#[allow(clippy::cast_precision_loss)]
impl From<EncoderStats> for BindingEncoderStats {
    fn from(s: EncoderStats) -> Self {
        BindingEncoderStats {
            bytes_in: s.bytes_in as f64,
            bytes_out: s.bytes_out as f64,
            chunks: s.chunks as f64,
            dedup_chunks: s.dedup_chunks as f64,
            dedup_bytes: s.dedup_bytes as f64,
            sent_raw_bytes: s.sent_raw_bytes as f64,
            sent_frame_bytes: s.sent_frame_bytes as f64,
        }
    }
}

/// Options of a new encoder.
#[napi(object)]
#[derive(Default)]
pub struct BindingEncoderOptions {
    pub chunker: Option<BindingChunkerOptions>,
    pub codec: Option<BindingCodecOptions>,
    /// `"cdc"` (default: FastCDC chunks, stream format 1, which the JS decoder reads) or
    /// `"pages"` (QEMU RAM pages as units, stream format 2, native decoder only).
    #[napi(ts_type = "'cdc' | 'pages'")]
    pub split: Option<String>,
    /// Threads for hashing and compression, 1..=64 (default 1: the stream is the same at any
    /// count, only faster).
    pub threads: Option<u32>,
}

fn split_of(name: Option<&str>) -> Result<Split, HdeError> {
    match name {
        None | Some("cdc") => Ok(Split::Cdc),
        Some("pages") => Ok(Split::Pages),
        Some(other) => Err(HdeError::InvalidParam {
            field: "split",
            reason: format!("'{other}' is not 'cdc' or 'pages'"),
        }),
    }
}

/// Encodes one stream. Await each push before the next: records must stay in order.
#[napi(js_name = "HdeEncoder")]
pub struct BindingEncoder {
    core: Exclusive<Encoder>,
}

#[napi]
impl BindingEncoder {
    #[napi(constructor, catch_unwind)]
    pub fn new(options: Option<BindingEncoderOptions>) -> napi::Result<Self> {
        let options = options.unwrap_or_default();
        let encoder = guard(|| {
            let params = ChunkerParams::try_from(options.chunker.unwrap_or_default())?;
            let split = split_of(options.split.as_deref())?;
            let mut encoder = Encoder::with_split(
                params,
                CodecLevel::try_from(options.codec.unwrap_or_default())?,
                split,
            )?;
            encoder.set_threads(options.threads.unwrap_or(1) as usize)?;
            Ok(encoder)
        })?;
        Ok(BindingEncoder {
            core: Exclusive::new(encoder),
        })
    }

    /// Declares chunks (hex ids) the receiver already holds; they will be sent as references.
    #[napi(catch_unwind)]
    pub fn mark_present(&self, ids: Vec<String>) -> napi::Result<()> {
        let parsed = ids
            .iter()
            .map(|s| ChunkId::from_hex(s))
            .collect::<dwcp_hde::Result<Vec<_>>>()
            .map_err(to_napi)?;
        self.core.lock()?.mark_present(parsed);
        Ok(())
    }

    /// Hex ids of every unit the receiver holds once it has this stream. With `split: 'pages'`
    /// they come in stream order: given to the next stream's `markPresent` (and its decoder's
    /// `setHeld`) before its first push, unchanged pages then cost a run, not a reference each.
    #[napi(catch_unwind)]
    pub fn held_ids(&self) -> napi::Result<Vec<String>> {
        Ok(self
            .core
            .lock()?
            .held_ids()
            .iter()
            .map(ChunkId::to_hex)
            .collect())
    }

    /// Page mode: the previous stream of this VM, whose pages the receiver holds (the stream
    /// the HELD list came from). A page that changed is then sent as zstd against its previous
    /// version. Copies `previous`.
    #[napi(catch_unwind)]
    pub fn set_reference(&self, previous: Buffer) -> napi::Result<()> {
        let mut encoder = self.core.lock()?;
        guard(|| encoder.set_reference(&previous))
    }

    /// Switches codec or level from the next chunk on.
    #[napi(catch_unwind)]
    pub fn set_codec(&self, codec: BindingCodecOptions) -> napi::Result<()> {
        let level = CodecLevel::try_from(codec).map_err(to_napi)?;
        self.core.lock()?.set_level(level);
        Ok(())
    }

    /// Counters so far.
    #[napi]
    pub fn stats(&self) -> napi::Result<BindingEncoderStats> {
        Ok(self.core.lock()?.stats().into())
    }

    /// Encodes `data`; returns the records completed by it (possibly empty).
    #[napi(catch_unwind)]
    pub fn push_sync(&self, data: Buffer) -> napi::Result<Buffer> {
        let mut encoder = self.core.lock()?;
        guard(|| push(&mut encoder, &data))
    }

    /// [`push_sync`](Self::push_sync) on a worker thread.
    #[napi(ts_return_type = "Promise<Buffer>")]
    pub fn push(
        &self,
        data: Buffer,
        signal: Option<AbortSignal>,
    ) -> napi::Result<AsyncTask<Work<Buffer>>> {
        let job = self.core.job(move |encoder| push(encoder, &data))?;
        Ok(AsyncTask::with_optional_signal(job, signal))
    }

    /// Ends the stream: the last chunk and the END record.
    #[napi(catch_unwind)]
    pub fn finish_sync(&self) -> napi::Result<Buffer> {
        let mut encoder = self.core.lock()?;
        guard(|| {
            let mut out = Vec::new();
            encoder.finish(&mut out)?;
            Ok(out.into())
        })
    }
}

fn push(encoder: &mut Encoder, data: &[u8]) -> dwcp_hde::Result<Buffer> {
    let mut out = Vec::with_capacity(data.len() + 4096);
    encoder.push(data, &mut out)?;
    Ok(out.into())
}
