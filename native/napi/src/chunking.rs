//! Chunk boundaries and chunk ids, for cross-checks against the JS reference path and benches.

use dwcp_hde::{ChunkId, Chunker, ChunkerParams};
use napi::bindgen_prelude::{AbortSignal, AsyncTask, Buffer};
use napi_derive::napi;

use crate::error::guard;
use crate::options::BindingChunkerOptions;
use crate::work::Work;

fn lengths(data: &[u8], options: Option<BindingChunkerOptions>) -> dwcp_hde::Result<Vec<u32>> {
    let params = ChunkerParams::try_from(options.unwrap_or_default())?;
    let mut out = Vec::with_capacity(data.len() / params.avg_size + 1);
    let mut chunker = Chunker::new(params)?;
    // Every length fits u32: max_size is at most 16 MiB.
    #[allow(clippy::cast_possible_truncation)]
    let mut emit = |c: &[u8]| {
        out.push(c.len() as u32);
        Ok(())
    };
    chunker.push(data, &mut emit)?;
    chunker.finish(&mut emit)?;
    Ok(out)
}

/// The lengths of the content-defined chunks of `data`, in order.
#[napi(catch_unwind)]
pub fn chunk_lengths_sync(
    data: Buffer,
    options: Option<BindingChunkerOptions>,
) -> napi::Result<Vec<u32>> {
    guard(|| lengths(&data, options))
}

/// [`chunk_lengths_sync`] on a worker thread.
#[napi(ts_return_type = "Promise<number[]>")]
pub fn chunk_lengths(
    data: Buffer,
    options: Option<BindingChunkerOptions>,
    signal: Option<AbortSignal>,
) -> AsyncTask<Work<Vec<u32>>> {
    AsyncTask::with_optional_signal(Work::new(move || lengths(&data, options)), signal)
}

/// The BLAKE3 id of `data`, as 64 hex digits.
#[napi(catch_unwind)]
pub fn chunk_id_sync(data: Buffer) -> String {
    ChunkId::of(&data).to_hex()
}
