//! Test-only damage, with the `fault-injection` feature: flips a bit in DATA frames after AMST
//! computed their CRC, as a faulty sender's memory or a bug between framing and TLS would. The
//! receiver must catch it by the CRC and have the frame sent again. Without the feature the hook
//! is empty and costs nothing.

use dwcp_amst::Transmit;

use crate::send::SendOptions;

/// Says, for each DATA frame handed to a connection (by its sequence number), which bit of the
/// payload to flip in the copy that is written, if any; the bit index wraps around the payload.
/// The sender's own copy stays intact, so a resend is good unless the hook damages it too.
#[cfg(feature = "fault-injection")]
#[derive(Clone)]
pub struct FrameFault(pub std::sync::Arc<dyn Fn(u64) -> Option<usize> + Send + Sync>);

#[cfg(feature = "fault-injection")]
impl std::fmt::Debug for FrameFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FrameFault")
    }
}

/// What each connection's writer applies to the frames it writes.
#[derive(Clone)]
pub(crate) struct Hook(#[cfg(feature = "fault-injection")] Option<FrameFault>);

impl Hook {
    pub(crate) fn of(options: &SendOptions) -> Self {
        #[cfg(not(feature = "fault-injection"))]
        let _ = options;
        Hook(
            #[cfg(feature = "fault-injection")]
            options.damage.clone(),
        )
    }

    #[cfg(not(feature = "fault-injection"))]
    #[allow(clippy::unused_self)]
    pub(crate) fn apply(&self, tx: Transmit) -> Transmit {
        tx
    }

    #[cfg(feature = "fault-injection")]
    pub(crate) fn apply(&self, mut tx: Transmit) -> Transmit {
        let (Some(fault), Some(seq)) = (&self.0, tx.seq) else {
            return tx;
        };
        if let Some(bit) = (fault.0)(seq).filter(|_| !tx.payload.is_empty()) {
            let bit = bit % (tx.payload.len() * 8);
            let mut copy = tx.payload.to_vec();
            copy[bit / 8] ^= 1 << (bit % 8);
            tx.payload = copy.into();
        }
        tx
    }
}
