//! `RaftDriver`: one Raft node, sans-IO. Inputs (`tick`, `step`, proposals) change in-memory
//! state only; `ready()` persists what raft-rs produced, fsync'd, then hands out what to send
//! and what to apply.
//!
//! Methods come in groups: getters (`id`, `status`, `has_ready`), inputs (`tick`, `step`,
//! `report_*`), mutators (`propose*`, `read_index`, `campaign`, `transfer_leader`,
//! `apply_conf_change`, `compact`) and the one output, `ready`.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType, ConfState, Entry, EntryType, Message, Snapshot};
use raft::{RawNode, SnapshotStatus, StateRole};

use crate::config::{NodeConfig, BOOTSTRAP_INDEX, BOOTSTRAP_TERM};
use crate::error::{AcpError, Result};
use crate::membership;
use crate::ready::{
    AppliedConfChange, CommittedEntry, ConfChangeKind, EntryKind, NodeStatus, OutgoingMessage,
    ReadState, ReadyOutput, RestoredSnapshot, SoftStateChange,
};
use crate::storage::DiskStorage;

/// A Raft node over a data directory. Not thread-safe by itself: one owner drives it.
pub struct RaftDriver {
    node: RawNode<DiskStorage>,
    /// Conf-change entries handed out by `ready` and not yet applied, by index.
    pending_conf: BTreeMap<u64, (EntryType, Vec<u8>)>,
    /// Why the node can no longer be used, once something left it inconsistent.
    poisoned: Option<String>,
    /// The stored snapshot, handed to the caller by the first `ready()` after `open` so it can
    /// rebuild its state machine before the re-delivered entries.
    restart_snapshot: Option<RestoredSnapshot>,
    /// Whether this node is still a member, or has applied its own removal.
    retirement: Retirement,
}

/// A node that applies its own removal stops taking part, so it cannot go on leading (raft-rs
/// keeps a removed leader leading, which wedges the rest) nor disturb the remaining voters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retirement {
    Member,
    /// A removed leader handing leadership over; it retires when it no longer leads or after
    /// `ticks_left` more ticks (one election timeout), whichever comes first.
    Leaving {
        ticks_left: usize,
    },
    Removed,
}

impl std::fmt::Debug for RaftDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftDriver")
            .field("status", &self.status())
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

fn encode_messages(msgs: Vec<Message>, out: &mut Vec<OutgoingMessage>) -> Result<()> {
    for m in msgs {
        let bytes = m
            .write_to_bytes()
            .map_err(|e| AcpError::BadMessage(format!("cannot encode outgoing message: {e}")))?;
        out.push(OutgoingMessage { to: m.to, bytes });
    }
    Ok(())
}

fn committed(entries: Vec<Entry>, out: &mut Vec<CommittedEntry>) {
    out.extend(entries.into_iter().map(|e| CommittedEntry {
        index: e.index,
        term: e.term,
        kind: e.get_entry_type().into(),
        data: e.data.to_vec(),
        context: e.context.to_vec(),
    }));
}

/// One whole Ready cycle; see [`RaftDriver::ready`].
fn ready_cycle(node: &mut RawNode<DiskStorage>) -> Result<ReadyOutput> {
    let mut out = ReadyOutput::default();
    if !node.has_ready() {
        out.snapshot_requested = node.store().take_snapshot_wanted();
        return Ok(out);
    }
    let mut rd = node.ready();
    encode_messages(rd.take_messages(), &mut out.messages)?;
    if let Some(ss) = rd.ss() {
        out.soft_state = Some(SoftStateChange {
            leader_id: ss.leader_id,
            role: ss.raft_state.into(),
        });
    }
    out.read_states = rd
        .take_read_states()
        .into_iter()
        .map(|r| ReadState {
            index: r.index,
            request_ctx: r.request_ctx,
        })
        .collect();
    let snapshot: Option<Snapshot> = (!rd.snapshot().is_empty()).then(|| rd.snapshot().clone());
    let entries = rd.take_entries();
    let hard_state = rd.hs().cloned();
    node.mut_store()
        .persist(snapshot.as_ref(), &entries, hard_state.as_ref())?;
    if let Some(s) = snapshot {
        let meta = s.get_metadata();
        out.snapshot = Some(RestoredSnapshot {
            index: meta.index,
            term: meta.term,
            data: s.data.to_vec(),
            membership: meta.get_conf_state().into(),
        });
    }
    committed(rd.take_committed_entries(), &mut out.committed_entries);
    // Only valid once the entries and hard state above are on disk: votes and append acks.
    encode_messages(rd.take_persisted_messages(), &mut out.messages)?;
    let mut light = node.advance(rd);
    if let Some(commit) = light.commit_index() {
        node.mut_store().set_commit(commit)?;
    }
    encode_messages(light.take_messages(), &mut out.messages)?;
    committed(light.take_committed_entries(), &mut out.committed_entries);
    node.advance_apply();
    out.snapshot_requested = node.store().take_snapshot_wanted();
    Ok(out)
}

impl RaftDriver {
    /// Opens the node in `data_dir`. A blank directory with `initial_voters` bootstraps a new
    /// cluster; a blank one without starts empty and waits for a leader to catch it up; anything
    /// else restores from disk, re-delivering the entries committed after the stored snapshot.
    pub fn open(config: &NodeConfig, data_dir: impl AsRef<Path>) -> Result<Self> {
        config.validate()?;
        let mut store = DiskStorage::open(data_dir, config.id)?;
        if store.is_blank() && !config.initial_voters.is_empty() {
            let mut cs = ConfState::default();
            cs.set_voters(config.initial_voters.clone());
            store.bootstrap(BOOTSTRAP_INDEX, BOOTSTRAP_TERM, cs)?;
        }
        // The state machine lives in the caller's memory, so after a restart everything since
        // the snapshot must be applied again.
        let stored = store.stored_snapshot();
        let meta = stored.get_metadata();
        let applied = meta.index;
        let restart_snapshot = (applied > 0).then(|| RestoredSnapshot {
            index: meta.index,
            term: meta.term,
            data: stored.data.to_vec(),
            membership: meta.get_conf_state().into(),
        });
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let raft_config = config.to_raft(applied);
        let node = catch_unwind(AssertUnwindSafe(|| {
            RawNode::new(&raft_config, store, &logger)
        }))
        .map_err(|p| {
            AcpError::Corrupt(format!(
                "raft-rs refused the stored state: {}",
                panic_message(p)
            ))
        })??;
        Ok(RaftDriver {
            node,
            pending_conf: BTreeMap::new(),
            poisoned: None,
            restart_snapshot,
            retirement: Retirement::Member,
        })
    }

    // Getters.

    /// This node's id.
    pub fn id(&self) -> u64 {
        self.node.raft.id
    }

    /// Whether `ready()` has anything to persist, send, apply or report.
    pub fn has_ready(&self) -> bool {
        self.restart_snapshot.is_some()
            || self.node.has_ready()
            || self.node.store().snapshot_wanted()
    }

    /// Term, leader, role, log bounds and membership.
    pub fn status(&self) -> NodeStatus {
        let r = &self.node.raft;
        NodeStatus {
            id: r.id,
            term: r.term,
            leader_id: r.leader_id,
            role: r.state.into(),
            commit: r.raft_log.committed,
            applied: r.raft_log.applied,
            first_index: r.raft_log.first_index(),
            last_index: r.raft_log.last_index(),
            membership: (&r.prs().conf().to_conf_state()).into(),
            removed: self.retirement != Retirement::Member,
        }
    }

    /// The durable store (read-only), for inspection.
    pub fn storage(&self) -> &DiskStorage {
        self.node.store()
    }

    // Inputs.

    /// Advances logical time by one tick (elections and heartbeats are counted in ticks).
    /// A removed node's ticks do nothing; a leaving one asks again for its handover (a voter
    /// that had not yet applied the removal refuses to campaign) and retires once it no longer
    /// leads.
    pub fn tick(&mut self) -> Result<()> {
        if let Retirement::Leaving { ticks_left } = self.retirement {
            if ticks_left == 0 || self.node.raft.state != StateRole::Leader {
                self.retired();
            } else {
                self.retirement = Retirement::Leaving {
                    ticks_left: ticks_left - 1,
                };
                self.hand_over();
            }
        }
        if self.retirement == Retirement::Removed {
            return Ok(());
        }
        self.guarded("tick", |n| {
            n.tick();
            Ok(())
        })
    }

    /// Feeds a message from a peer: the protobuf bytes another node's `ready()` produced.
    /// Anything that does not decode, is addressed to another node or is a local-only message
    /// type is refused with [`AcpError::BadMessage`].
    pub fn step(&mut self, bytes: &[u8]) -> Result<()> {
        let msg = Message::parse_from_bytes(bytes)
            .map_err(|e| AcpError::BadMessage(format!("does not decode: {e}")))?;
        if msg.to != self.id() {
            return Err(AcpError::BadMessage(format!(
                "addressed to {}, this is node {}",
                msg.to,
                self.id()
            )));
        }
        if msg.from == 0 {
            return Err(AcpError::BadMessage("no sender".into()));
        }
        if raft::raw_node::is_local_msg(msg.get_msg_type()) {
            return Err(AcpError::BadMessage(format!(
                "{:?} is local to a node and never sent",
                msg.get_msg_type()
            )));
        }
        if self.retirement == Retirement::Removed {
            return Err(AcpError::Removed(format!(
                "node {} takes no messages",
                self.id()
            )));
        }
        self.guarded("step", |n| Ok(n.step(msg)?))
    }

    /// The transport could not reach peer `id`: the leader stops pipelining to it.
    pub fn report_unreachable(&mut self, id: u64) -> Result<()> {
        self.guarded("report_unreachable", |n| {
            n.report_unreachable(id);
            Ok(())
        })
    }

    /// A snapshot sent to peer `id` was delivered (`ok`) or lost.
    pub fn report_snapshot(&mut self, id: u64, ok: bool) -> Result<()> {
        let status = if ok {
            SnapshotStatus::Finish
        } else {
            SnapshotStatus::Failure
        };
        self.guarded("report_snapshot", |n| {
            n.report_snapshot(id, status);
            Ok(())
        })
    }

    // Mutators.

    /// Proposes `data` (with an opaque `context`). Only a leader accepts proposals; returns the
    /// index the entry got, which commits with that index and the current term or not at all.
    pub fn propose(&mut self, data: Vec<u8>, context: Vec<u8>) -> Result<u64> {
        self.require_member()?;
        self.require_leader()?;
        self.guarded("propose", |n| {
            n.propose(context, data)?;
            Ok(n.raft.raft_log.last_index())
        })
    }

    /// Proposes adding or removing `node_id`; returns the entry's index. One conf change at a
    /// time: while one is committed but not yet applied, another is refused. Which changes are
    /// wise (not the last voter, not one that leaves no reachable quorum) is the caller's policy;
    /// one raft-rs cannot apply still commits, and `apply_conf_change` records it as a no-op.
    pub fn propose_conf_change(
        &mut self,
        kind: ConfChangeKind,
        node_id: u64,
        context: Vec<u8>,
    ) -> Result<u64> {
        if node_id == 0 {
            return Err(AcpError::config("nodeId", "must be non-zero"));
        }
        self.require_member()?;
        self.require_leader()?;
        if self.node.raft.has_pending_conf() {
            // raft-rs would silently turn it into an empty entry.
            return Err(AcpError::ProposalDropped(
                "another conf change is not applied yet".into(),
            ));
        }
        let mut cc = ConfChange::default();
        cc.set_change_type(match kind {
            ConfChangeKind::AddNode => ConfChangeType::AddNode,
            ConfChangeKind::RemoveNode => ConfChangeType::RemoveNode,
            ConfChangeKind::AddLearner => ConfChangeType::AddLearnerNode,
        });
        cc.node_id = node_id;
        self.guarded("propose_conf_change", |n| {
            n.propose_conf_change(context, cc)?;
            Ok(n.raft.raft_log.last_index())
        })
    }

    /// Asks for a linearizable read; a [`ReadState`] with the same `context` comes out of a
    /// later `ready()` once the leader confirmed its leadership.
    pub fn read_index(&mut self, context: Vec<u8>) -> Result<()> {
        if context.is_empty() {
            return Err(AcpError::config(
                "context",
                "must not be empty (it identifies the read)",
            ));
        }
        self.require_member()?;
        self.guarded("read_index", |n| {
            n.read_index(context);
            Ok(())
        })
    }

    /// Starts an election now instead of waiting for the election timeout.
    pub fn campaign(&mut self) -> Result<()> {
        self.require_member()?;
        self.guarded("campaign", |n| Ok(n.campaign()?))
    }

    /// Asks the leader to hand leadership to `id`.
    pub fn transfer_leader(&mut self, id: u64) -> Result<()> {
        self.guarded("transfer_leader", |n| {
            n.transfer_leader(id);
            Ok(())
        })
    }

    /// Applies the committed conf-change entry at `index` (handed out by `ready()`) and persists
    /// the resulting membership. Total: an entry raft-rs refuses (it would remove the last voter,
    /// say) or that does not decode is recorded as a no-op with the reason in
    /// [`AppliedConfChange::rejected`], on every replica alike and again after a restart, where
    /// re-delivered conf changes that were applied before are not applied twice. A node that
    /// applies its own removal retires (a leader hands leadership to its most caught-up voter
    /// first).
    pub fn apply_conf_change(&mut self, index: u64) -> Result<AppliedConfChange> {
        let Some((entry_type, data)) = self.pending_conf.remove(&index) else {
            return Err(AcpError::Contract(format!(
                "no committed conf change awaits applying at index {index}"
            )));
        };
        let decoded = membership::decode(entry_type, &data);
        let change = decoded.as_ref().ok().and_then(membership::requested);
        if let Some(cs) = self.node.store().recorded_conf_state(index) {
            let rejected = match &decoded {
                Err(why) => Some(why.clone()),
                Ok(_) => membership::recorded_rejection(change, cs),
            };
            return Ok(AppliedConfChange {
                membership: cs.into(),
                change,
                rejected,
            });
        }
        let outcome = match decoded {
            Err(why) => Err(why),
            Ok(cc) => self
                .guarded("apply_conf_change", |n| Ok(n.apply_conf_change(&cc)))?
                .map_err(|e| e.to_string()),
        };
        let (cs, rejected) = match outcome {
            Ok(cs) => (cs, None),
            Err(why) => (self.node.raft.prs().conf().to_conf_state(), Some(why)),
        };
        if let Err(e) = self.node.mut_store().record_conf_state(index, &cs) {
            self.poisoned = Some(format!(
                "conf change at {index} applied but not persisted: {e}"
            ));
            return Err(e);
        }
        if rejected.is_none() && !membership::is_member(&cs, self.id()) {
            self.retire();
        }
        Ok(AppliedConfChange {
            membership: (&cs).into(),
            change,
            rejected,
        })
    }

    /// Starts retiring after this node's own removal; see [`Retirement`].
    fn retire(&mut self) {
        if self.retirement != Retirement::Member {
            return;
        }
        if self.node.raft.state != StateRole::Leader {
            self.retirement = Retirement::Removed;
            return;
        }
        self.retirement = Retirement::Leaving {
            ticks_left: self.node.raft.election_timeout(),
        };
        self.hand_over();
    }

    /// Asks raft-rs to hand leadership to the most caught-up remaining voter.
    fn hand_over(&mut self) {
        let prs = self.node.raft.prs();
        let transferee = prs
            .conf()
            .voters()
            .ids()
            .iter()
            .filter(|&id| id != self.id())
            .max_by_key(|&id| prs.get(id).map_or(0, |p| p.matched));
        if let Some(to) = transferee {
            self.node.raft.abort_leader_transfer();
            self.node.transfer_leader(to);
        }
    }

    /// Done retiring: a leader that could not hand over steps down, so nobody takes it for one.
    fn retired(&mut self) {
        self.retirement = Retirement::Removed;
        if self.node.raft.state == StateRole::Leader {
            let term = self.node.raft.term;
            self.node.raft.become_follower(term, raft::INVALID_ID);
        }
    }

    /// Stores `data`, the caller's state machine as of `applied_index`, as the snapshot (with the
    /// membership in force there), fsync'd, and drops the log up to it. Returns false when the
    /// stored snapshot is already at or past `applied_index`.
    pub fn compact(&mut self, applied_index: u64, data: Vec<u8>) -> Result<bool> {
        let applied = self.node.raft.raft_log.applied;
        if applied_index > applied {
            return Err(AcpError::config(
                "appliedIndex",
                format!("{applied_index} is past the applied index {applied}"),
            ));
        }
        if let Some(&index) = self.pending_conf.keys().next() {
            if index <= applied_index {
                return Err(AcpError::Contract(format!(
                    "the conf change at {index} must be applied before compacting to {applied_index}"
                )));
            }
        }
        self.guarded("compact", |n| n.mut_store().compact(applied_index, data))
    }

    // Output.

    /// Runs one whole raft-rs Ready cycle: persists the received snapshot, the new entries and
    /// the hard state (one fsync), advances raft-rs, and returns what to send and what to apply.
    /// The caller must apply every committed entry (and `apply_conf_change` every conf change)
    /// before the next call.
    pub fn ready(&mut self) -> Result<ReadyOutput> {
        if let Some(&index) = self.pending_conf.keys().next() {
            return Err(AcpError::Contract(format!(
                "the conf change at {index} must be applied before the next ready()"
            )));
        }
        let mut out = match self.guarded("ready", ready_cycle) {
            Ok(out) => out,
            Err(e) => {
                // raft-rs has handed out a Ready that was neither persisted nor advanced.
                if self.poisoned.is_none() {
                    self.poisoned = Some(format!("ready failed: {e}"));
                }
                return Err(e);
            }
        };
        if let Some(stored) = self.restart_snapshot.take() {
            // A snapshot received in this very cycle is newer and replaces the stored one.
            out.snapshot.get_or_insert(stored);
        }
        for e in &out.committed_entries {
            let entry_type = match e.kind {
                EntryKind::Normal => continue,
                EntryKind::ConfChange => EntryType::EntryConfChange,
                EntryKind::ConfChangeV2 => EntryType::EntryConfChangeV2,
            };
            self.pending_conf
                .insert(e.index, (entry_type, e.data.clone()));
        }
        Ok(out)
    }

    fn require_member(&self) -> Result<()> {
        match self.retirement {
            Retirement::Member => Ok(()),
            _ => Err(AcpError::Removed(format!(
                "node {} was removed from the configuration",
                self.id()
            ))),
        }
    }

    fn require_leader(&self) -> Result<()> {
        if self.node.raft.state == StateRole::Leader {
            Ok(())
        } else {
            Err(AcpError::NotLeader {
                leader: self.node.raft.leader_id,
            })
        }
    }

    /// Runs `f` unless the node is poisoned; a panic inside raft-rs poisons it.
    fn guarded<T>(
        &mut self,
        what: &str,
        f: impl FnOnce(&mut RawNode<DiskStorage>) -> Result<T>,
    ) -> Result<T> {
        if let Some(why) = &self.poisoned {
            return Err(AcpError::Poisoned(why.clone()));
        }
        match catch_unwind(AssertUnwindSafe(|| f(&mut self.node))) {
            Ok(result) => result,
            Err(payload) => {
                let why = format!("panic in {what}: {}", panic_message(payload));
                self.poisoned = Some(why.clone());
                Err(AcpError::Poisoned(why))
            }
        }
    }
}
