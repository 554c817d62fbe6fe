//! Conf-change entries as data: decoding them, what they ask for, and whether a recorded result
//! shows that they took effect. Applying a committed entry must be total (etcd treats a conf
//! change it cannot apply as a no-op), so everything here answers instead of failing.

use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType, ConfChangeV2, ConfState, EntryType};

use crate::ready::ConfChangeKind;

/// Decodes a conf-change entry's data as raft-rs's V2 form, or says why it cannot.
pub(crate) fn decode(entry_type: EntryType, data: &[u8]) -> Result<ConfChangeV2, String> {
    let bad = |e: protobuf::ProtobufError| format!("the entry does not decode: {e}");
    match entry_type {
        EntryType::EntryConfChangeV2 => ConfChangeV2::parse_from_bytes(data).map_err(bad),
        _ => {
            let cc = ConfChange::parse_from_bytes(data).map_err(bad)?;
            let mut v2 = ConfChangeV2::default();
            let mut single = raft::eraftpb::ConfChangeSingle::default();
            single.set_change_type(cc.get_change_type());
            single.node_id = cc.node_id;
            v2.mut_changes().push(single);
            v2.context = cc.context;
            Ok(v2)
        }
    }
}

/// The one change a simple (non-joint) conf change asks for.
pub(crate) fn requested(cc: &ConfChangeV2) -> Option<(ConfChangeKind, u64)> {
    match cc.get_changes() {
        [one] => Some((
            match one.get_change_type() {
                ConfChangeType::AddNode => ConfChangeKind::AddNode,
                ConfChangeType::RemoveNode => ConfChangeKind::RemoveNode,
                ConfChangeType::AddLearnerNode => ConfChangeKind::AddLearner,
            },
            one.node_id,
        )),
        _ => None,
    }
}

/// Whether `id` is in the configuration at all (voter, learner or outgoing voter).
pub(crate) fn is_member(cs: &ConfState, id: u64) -> bool {
    cs.get_voters()
        .iter()
        .chain(cs.get_learners())
        .chain(cs.get_voters_outgoing())
        .any(|&v| v == id)
}

/// For an entry whose result was recorded before (a restart re-delivers it): whether that
/// result shows the change did not happen. Exact for simple changes, which are all a
/// [`crate::RaftDriver`] proposes; a joint change is taken as applied.
pub(crate) fn recorded_rejection(
    change: Option<(ConfChangeKind, u64)>,
    after: &ConfState,
) -> Option<String> {
    let took_effect = match change? {
        (ConfChangeKind::AddNode, id) => after.get_voters().contains(&id),
        (ConfChangeKind::AddLearner, id) => after.get_learners().contains(&id),
        (ConfChangeKind::RemoveNode, id) => !is_member(after, id),
    };
    (!took_effect).then(|| "rejected when it was first applied; it changed nothing".to_string())
}
