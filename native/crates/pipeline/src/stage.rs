//! What flows between a pipeline's stages, and the small helpers every stage shares.

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use crate::{PipelineError, Result};

/// Pieces in flight between two stages. Small: with AMST's own window this is what bounds memory.
pub(crate) const QUEUE: usize = 8;

/// One message between stages. A stream ends only with an explicit `End`: a channel that closes
/// without one means the stage before failed, and the stage after must not finish the stream.
pub(crate) enum Piece {
    Data(Bytes),
    End,
}

/// Most bytes a stage whose work runs on several threads takes at once.
pub(crate) const GATHER: usize = 4 << 20;
/// Largest piece a stage passes on: a queue of [`QUEUE`] pieces then holds no more than it did
/// before stages took many pieces at once. Bytes held between QEMU and AMST's send buffer are
/// invisible to QEMU's stop decision, so this bound matters for the guest's pause.
pub(crate) const PIECE: usize = 256 * 1024;

/// `first` and the pieces already queued after it, up to [`GATHER`] bytes in all, for a stage
/// that hashes or compresses many chunks at once; and whether the stream's `End` came too.
/// Never waits for more, and takes only `first` unless `downstream` is empty: a stage whose
/// output is still queued is not the bottleneck, and gathering would only hold more bytes.
pub(crate) fn gather<T>(
    first: Bytes,
    queue: &mut mpsc::Receiver<Piece>,
    downstream: &mpsc::Sender<T>,
) -> (Vec<Bytes>, bool) {
    let mut bytes = first.len();
    let mut pieces = vec![first];
    if downstream.capacity() < downstream.max_capacity() {
        return (pieces, false);
    }
    while bytes < GATHER {
        match queue.try_recv() {
            Ok(Piece::Data(data)) => {
                bytes += data.len();
                pieces.push(data);
            }
            Ok(Piece::End) => return (pieces, true),
            Err(_) => break,
        }
    }
    (pieces, false)
}

/// Passes `data` on in pieces of at most [`PIECE`] bytes (no copy).
pub(crate) fn pass_on<T>(
    downstream: &mpsc::Sender<T>,
    mut data: Bytes,
    wrap: impl Fn(Bytes) -> T,
) -> std::result::Result<(), Stop> {
    while !data.is_empty() {
        let piece = data.split_to(data.len().min(PIECE));
        downstream
            .blocking_send(wrap(piece))
            .map_err(|_| Stop::Downstream)?;
    }
    Ok(())
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
