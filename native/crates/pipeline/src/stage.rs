//! What flows between a pipeline's stages, and the small helpers every stage shares.

use bytes::Bytes;
use tokio::sync::watch;

use crate::{PipelineError, Result};

/// Pieces in flight between two stages. Small: with AMST's own window this is what bounds memory.
pub(crate) const QUEUE: usize = 8;

/// One message between stages. A stream ends only with an explicit `End`: a channel that closes
/// without one means the stage before failed, and the stage after must not finish the stream.
pub(crate) enum Piece {
    Data(Bytes),
    End,
}

/// Why a stage stopped early, so the orchestrator can tell a cause from its echo.
pub(crate) enum Stop {
    /// This stage failed on its own.
    Failed(PipelineError),
    /// The next stage went away; its own result says why.
    Downstream,
    /// The previous stage went away without an `End`; its own result says why.
    Upstream,
}

impl From<PipelineError> for Stop {
    fn from(e: PipelineError) -> Self {
        Stop::Failed(e)
    }
}

/// Resolves once `cancel` is set (or its sender is gone).
pub(crate) async fn cancelled(cancel: &mut watch::Receiver<bool>) {
    let _ = cancel.wait_for(|c| *c).await;
}

/// The error of a stage that stopped early; an echo becomes `fallback`'s error.
pub(crate) fn cause(stop: Stop, fallback: impl FnOnce() -> PipelineError) -> PipelineError {
    match stop {
        Stop::Failed(e) => e,
        Stop::Downstream | Stop::Upstream => fallback(),
    }
}

/// Flattens a stage task's join result.
pub(crate) fn joined<T>(
    r: std::result::Result<std::result::Result<T, Stop>, tokio::task::JoinError>,
) -> std::result::Result<T, Stop> {
    r.map_err(|e| Stop::Failed(PipelineError::joined(e)))?
}

/// Result of a stage that has no echo to look through.
pub(crate) fn plain<T>(r: std::result::Result<T, Stop>) -> Result<T> {
    r.map_err(|s| {
        cause(s, || {
            PipelineError::Panic("a stage stopped with no cause".into())
        })
    })
}
