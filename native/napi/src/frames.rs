//! Single-frame compression, for tests and the codec benchmark.

use dwcp_hde::{frame, CodecLevel};
use napi::bindgen_prelude::{AbortSignal, AsyncTask, Buffer};
use napi_derive::napi;

use crate::error::guard;
use crate::options::BindingCodecOptions;
use crate::work::Work;

fn encode(data: &[u8], options: Option<BindingCodecOptions>) -> dwcp_hde::Result<Buffer> {
    let level = CodecLevel::try_from(options.unwrap_or_default())?;
    let mut out = Vec::with_capacity(data.len() / 2 + frame::HEADER_LEN);
    frame::encode_into(data, level, &mut out)?;
    Ok(out.into())
}

fn decode(data: &[u8]) -> dwcp_hde::Result<Buffer> {
    let mut out = Vec::new();
    frame::decode_into(data, &mut out)?;
    Ok(out.into())
}

/// Compresses `data` into one frame that records the codec and raw length.
#[napi(catch_unwind)]
pub fn encode_frame_sync(
    data: Buffer,
    options: Option<BindingCodecOptions>,
) -> napi::Result<Buffer> {
    guard(|| encode(&data, options))
}

/// [`encode_frame_sync`] on a worker thread.
#[napi(ts_return_type = "Promise<Buffer>")]
pub fn encode_frame(
    data: Buffer,
    options: Option<BindingCodecOptions>,
    signal: Option<AbortSignal>,
) -> AsyncTask<Work<Buffer>> {
    AsyncTask::with_optional_signal(Work::new(move || encode(&data, options)), signal)
}

/// Decodes one whole frame back to the raw bytes.
#[napi(catch_unwind)]
pub fn decode_frame_sync(frame: Buffer) -> napi::Result<Buffer> {
    guard(|| decode(&frame))
}

/// [`decode_frame_sync`] on a worker thread.
#[napi(ts_return_type = "Promise<Buffer>")]
pub fn decode_frame(frame: Buffer, signal: Option<AbortSignal>) -> AsyncTask<Work<Buffer>> {
    AsyncTask::with_optional_signal(Work::new(move || decode(&frame)), signal)
}
