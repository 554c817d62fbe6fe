//! The one place core errors become JS errors.

use dwcp_hde::HdeError;

/// `ERR_HDE_*: message`. napi-rs fixes the `code` of errors rejected from worker threads to a
/// napi status, so the stable code travels in the message and the facade lifts it out.
pub fn to_napi(e: HdeError) -> napi::Error {
    napi::Error::from_reason(format!("{}: {e}", e.code()))
}

/// The same for transport errors.
pub fn transport_to_napi(e: dwcp_transport::TransportError) -> napi::Error {
    napi::Error::from_reason(format!("{}: {e}", e.code()))
}

/// The same for the migration data path; HDE and AMST errors inside keep their codes.
pub fn pipeline_to_napi(e: dwcp_pipeline::PipelineError) -> napi::Error {
    napi::Error::from_reason(format!("{}: {e}", e.code()))
}

/// For a panic caught at the boundary: a bug, reported as such, never a crash of Node.
pub fn panic_to_napi(payload: Box<dyn std::any::Any + Send>) -> napi::Error {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    napi::Error::from_reason(format!("ERR_NATIVE_PANIC: {what}"))
}

/// Runs `f`, turning both its error and any panic into a JS error.
pub fn guard<T>(f: impl FnOnce() -> dwcp_hde::Result<T>) -> napi::Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(result) => result.map_err(to_napi),
        Err(payload) => Err(panic_to_napi(payload)),
    }
}

/// The same for ACP (Raft) errors.
pub fn acp_to_napi(e: dwcp_acp::AcpError) -> napi::Error {
    napi::Error::from_reason(format!("{}: {e}", e.code()))
}

/// [`guard`] for ACP calls.
pub fn guard_acp<T>(f: impl FnOnce() -> dwcp_acp::Result<T>) -> napi::Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(result) => result.map_err(acp_to_napi),
        Err(payload) => Err(panic_to_napi(payload)),
    }
}
