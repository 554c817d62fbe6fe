//! `RaftNode`: the ACP Raft driver for JS. Converts types and forwards to `dwcp_acp::RaftDriver`;
//! node ids and indexes are JS numbers, checked to be safe integers. Calls are synchronous: each
//! one is in-memory work plus, for `ready`, `applyConfChange` and `compact`, one fsync'd commit.

use dwcp_acp::{
    AcpError, AppliedConfChange, CommittedEntry, ConfChangeKind, EntryKind, Membership, NodeConfig,
    NodeStatus, RaftDriver, ReadyOutput, RestoredSnapshot, Role,
};
use napi::bindgen_prelude::Buffer;
use napi_derive::napi;

use crate::error::guard_acp;

/// Largest integer a JS number holds exactly (`Number.MAX_SAFE_INTEGER`).
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

fn invalid(field: &'static str, reason: impl Into<String>) -> AcpError {
    AcpError::InvalidConfig {
        field,
        reason: reason.into(),
    }
}

/// A JS number that must be a non-negative safe integer (ids, indexes, sizes).
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn whole(field: &'static str, v: f64) -> Result<u64, AcpError> {
    if !(v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v <= MAX_SAFE_INTEGER) {
        return Err(invalid(
            field,
            format!("{v} is not an integer in [0, 2^53 - 1]"),
        ));
    }
    Ok(v as u64)
}

#[allow(clippy::cast_precision_loss)]
fn num(v: u64) -> f64 {
    v as f64
}

fn nums(ids: &[u64]) -> Vec<f64> {
    ids.iter().copied().map(num).collect()
}

fn count(field: &'static str, v: f64) -> Result<usize, AcpError> {
    let n = whole(field, v)?;
    usize::try_from(n).map_err(|_| invalid(field, format!("{n} is too large")))
}

/// How to open a node. See `RaftNodeConfig` in the TS facade.
#[napi(object)]
pub struct BindingRaftNodeConfig {
    pub id: f64,
    pub data_dir: String,
    pub election_tick: f64,
    pub heartbeat_tick: f64,
    pub initial_voters: Option<Vec<f64>>,
    pub pre_vote: Option<bool>,
    pub check_quorum: Option<bool>,
    pub max_size_per_msg: Option<f64>,
    pub max_inflight_msgs: Option<f64>,
}

impl TryFrom<&BindingRaftNodeConfig> for NodeConfig {
    type Error = AcpError;

    fn try_from(c: &BindingRaftNodeConfig) -> Result<Self, AcpError> {
        let defaults = NodeConfig::new(whole("id", c.id)?);
        Ok(NodeConfig {
            election_tick: count("electionTick", c.election_tick)?,
            heartbeat_tick: count("heartbeatTick", c.heartbeat_tick)?,
            initial_voters: c
                .initial_voters
                .as_deref()
                .unwrap_or_default()
                .iter()
                .map(|&v| whole("initialVoters", v))
                .collect::<Result<_, _>>()?,
            pre_vote: c.pre_vote.unwrap_or(defaults.pre_vote),
            check_quorum: c.check_quorum.unwrap_or(defaults.check_quorum),
            max_size_per_msg: match c.max_size_per_msg {
                Some(v) => whole("maxSizePerMsg", v)?,
                None => defaults.max_size_per_msg,
            },
            max_inflight_msgs: match c.max_inflight_msgs {
                Some(v) => count("maxInflightMsgs", v)?,
                None => defaults.max_inflight_msgs,
            },
            ..defaults
        })
    }
}

/// A message for peer `to`: hand `bytes` to that peer's `step`.
#[napi(object)]
pub struct BindingRaftMessage {
    pub to: f64,
    pub bytes: Buffer,
}

/// A committed entry. `kind` is `normal`, `confChange` or `confChangeV2`.
#[napi(object)]
pub struct BindingRaftEntry {
    pub index: f64,
    pub term: f64,
    pub kind: String,
    pub data: Buffer,
    pub context: Buffer,
}

impl From<CommittedEntry> for BindingRaftEntry {
    fn from(e: CommittedEntry) -> Self {
        BindingRaftEntry {
            index: num(e.index),
            term: num(e.term),
            kind: match e.kind {
                EntryKind::Normal => "normal",
                EntryKind::ConfChange => "confChange",
                EntryKind::ConfChangeV2 => "confChangeV2",
            }
            .into(),
            data: e.data.into(),
            context: e.context.into(),
        }
    }
}

/// A read that is safe once the state machine has applied `index`.
#[napi(object)]
pub struct BindingRaftReadState {
    pub index: f64,
    pub request_ctx: Buffer,
}

fn role(r: Role) -> String {
    match r {
        Role::Follower => "follower",
        Role::Candidate => "candidate",
        Role::Leader => "leader",
        Role::PreCandidate => "preCandidate",
    }
    .into()
}

/// The leader or this node's role changed. `role` is `follower`, `candidate`, `leader` or
/// `preCandidate`.
#[napi(object)]
pub struct BindingRaftSoftState {
    pub leader_id: f64,
    pub role: String,
}

/// Voters and learners (and the outgoing voters of a joint configuration).
#[napi(object)]
pub struct BindingRaftMembership {
    pub voters: Vec<f64>,
    pub learners: Vec<f64>,
    pub voters_outgoing: Vec<f64>,
}

impl From<Membership> for BindingRaftMembership {
    fn from(m: Membership) -> Self {
        BindingRaftMembership {
            voters: nums(&m.voters),
            learners: nums(&m.learners),
            voters_outgoing: nums(&m.voters_outgoing),
        }
    }
}

/// What applying a conf-change entry did: the membership after it, the change it asked for
/// (`kind` addNode/removeNode/addLearner and `nodeId`, absent for a joint change) and, when it
/// changed nothing, why.
#[napi(object)]
pub struct BindingRaftAppliedConfChange {
    pub membership: BindingRaftMembership,
    pub kind: Option<String>,
    pub node_id: Option<f64>,
    pub rejected: Option<String>,
}

impl From<AppliedConfChange> for BindingRaftAppliedConfChange {
    fn from(a: AppliedConfChange) -> Self {
        BindingRaftAppliedConfChange {
            membership: a.membership.into(),
            kind: a.change.map(|(k, _)| {
                match k {
                    ConfChangeKind::AddNode => "addNode",
                    ConfChangeKind::RemoveNode => "removeNode",
                    ConfChangeKind::AddLearner => "addLearner",
                }
                .to_string()
            }),
            node_id: a.change.map(|(_, id)| num(id)),
            rejected: a.rejected,
        }
    }
}

/// A snapshot to replace the state machine with.
#[napi(object)]
pub struct BindingRaftSnapshot {
    pub index: f64,
    pub term: f64,
    pub data: Buffer,
    pub membership: BindingRaftMembership,
}

impl From<RestoredSnapshot> for BindingRaftSnapshot {
    fn from(s: RestoredSnapshot) -> Self {
        BindingRaftSnapshot {
            index: num(s.index),
            term: num(s.term),
            data: s.data.into(),
            membership: s.membership.into(),
        }
    }
}

/// One Ready cycle's output; already persisted.
#[napi(object)]
pub struct BindingRaftReady {
    pub messages: Vec<BindingRaftMessage>,
    pub committed_entries: Vec<BindingRaftEntry>,
    pub read_states: Vec<BindingRaftReadState>,
    pub soft_state: Option<BindingRaftSoftState>,
    pub snapshot: Option<BindingRaftSnapshot>,
    pub snapshot_requested: bool,
}

impl From<ReadyOutput> for BindingRaftReady {
    fn from(r: ReadyOutput) -> Self {
        BindingRaftReady {
            messages: r
                .messages
                .into_iter()
                .map(|m| BindingRaftMessage {
                    to: num(m.to),
                    bytes: m.bytes.into(),
                })
                .collect(),
            committed_entries: r.committed_entries.into_iter().map(Into::into).collect(),
            read_states: r
                .read_states
                .into_iter()
                .map(|s| BindingRaftReadState {
                    index: num(s.index),
                    request_ctx: s.request_ctx.into(),
                })
                .collect(),
            soft_state: r.soft_state.map(|s| BindingRaftSoftState {
                leader_id: num(s.leader_id),
                role: role(s.role),
            }),
            snapshot: r.snapshot.map(Into::into),
            snapshot_requested: r.snapshot_requested,
        }
    }
}

/// A node's state.
#[napi(object)]
pub struct BindingRaftStatus {
    pub id: f64,
    pub term: f64,
    pub leader_id: f64,
    pub role: String,
    pub commit: f64,
    pub applied: f64,
    pub first_index: f64,
    pub last_index: f64,
    pub voters: Vec<f64>,
    pub learners: Vec<f64>,
    pub removed: bool,
}

impl From<NodeStatus> for BindingRaftStatus {
    fn from(s: NodeStatus) -> Self {
        BindingRaftStatus {
            id: num(s.id),
            term: num(s.term),
            leader_id: num(s.leader_id),
            role: role(s.role),
            commit: num(s.commit),
            applied: num(s.applied),
            first_index: num(s.first_index),
            last_index: num(s.last_index),
            voters: nums(&s.membership.voters),
            learners: nums(&s.membership.learners),
            removed: s.removed,
        }
    }
}

fn conf_change_kind(kind: &str) -> Result<ConfChangeKind, AcpError> {
    match kind {
        "addNode" => Ok(ConfChangeKind::AddNode),
        "removeNode" => Ok(ConfChangeKind::RemoveNode),
        "addLearner" => Ok(ConfChangeKind::AddLearner),
        other => Err(invalid(
            "kind",
            format!("`{other}` is not addNode, removeNode or addLearner"),
        )),
    }
}

fn bytes(b: Option<Buffer>) -> Vec<u8> {
    b.map(|b| b.to_vec()).unwrap_or_default()
}

/// One Raft node over a data directory. `close()` releases the directory (redb's file lock).
#[napi(js_name = "RaftNode")]
pub struct BindingRaftNode {
    inner: Option<RaftDriver>,
}

impl BindingRaftNode {
    fn run<T>(
        &mut self,
        f: impl FnOnce(&mut RaftDriver) -> dwcp_acp::Result<T>,
    ) -> napi::Result<T> {
        let driver = self
            .inner
            .as_mut()
            .ok_or_else(|| napi::Error::from_reason("ERR_ACP_CLOSED: the raft node is closed"))?;
        guard_acp(|| f(driver))
    }
}

#[napi]
impl BindingRaftNode {
    /// Opens (bootstrapping or restoring) the node in `config.dataDir`.
    #[napi(factory, catch_unwind)]
    pub fn open(config: BindingRaftNodeConfig) -> napi::Result<Self> {
        let driver = guard_acp(|| {
            let cfg = NodeConfig::try_from(&config)?;
            RaftDriver::open(&cfg, &config.data_dir)
        })?;
        Ok(BindingRaftNode {
            inner: Some(driver),
        })
    }

    #[napi(catch_unwind)]
    pub fn tick(&mut self) -> napi::Result<()> {
        self.run(RaftDriver::tick)
    }

    /// Feeds a peer's message (protobuf bytes from its `ready().messages`).
    #[napi(catch_unwind)]
    pub fn step(&mut self, message: Buffer) -> napi::Result<()> {
        self.run(|d| d.step(&message))
    }

    /// Returns the index the entry got.
    #[napi(catch_unwind)]
    pub fn propose(&mut self, data: Buffer, context: Option<Buffer>) -> napi::Result<f64> {
        let (data, context) = (data.to_vec(), bytes(context));
        self.run(|d| d.propose(data, context)).map(num)
    }

    /// Returns the index the conf-change entry got.
    #[napi(catch_unwind)]
    pub fn propose_conf_change(
        &mut self,
        kind: String,
        node_id: f64,
        context: Option<Buffer>,
    ) -> napi::Result<f64> {
        let context = bytes(context);
        self.run(|d| {
            let kind = conf_change_kind(&kind)?;
            d.propose_conf_change(kind, whole("nodeId", node_id)?, context)
        })
        .map(num)
    }

    #[napi(catch_unwind)]
    pub fn read_index(&mut self, context: Buffer) -> napi::Result<()> {
        let context = context.to_vec();
        self.run(|d| d.read_index(context))
    }

    #[napi(catch_unwind)]
    pub fn campaign(&mut self) -> napi::Result<()> {
        self.run(RaftDriver::campaign)
    }

    #[napi(catch_unwind)]
    pub fn transfer_leader(&mut self, id: f64) -> napi::Result<()> {
        self.run(|d| d.transfer_leader(whole("id", id)?))
    }

    #[napi(catch_unwind)]
    pub fn report_unreachable(&mut self, id: f64) -> napi::Result<()> {
        self.run(|d| d.report_unreachable(whole("id", id)?))
    }

    #[napi(catch_unwind)]
    pub fn report_snapshot(&mut self, id: f64, ok: bool) -> napi::Result<()> {
        self.run(|d| d.report_snapshot(whole("id", id)?, ok))
    }

    #[napi(catch_unwind)]
    pub fn has_ready(&mut self) -> napi::Result<bool> {
        self.run(|d| Ok(d.has_ready()))
    }

    /// Persists (fsync) and returns one Ready cycle's output.
    #[napi(catch_unwind)]
    pub fn ready(&mut self) -> napi::Result<BindingRaftReady> {
        self.run(RaftDriver::ready).map(Into::into)
    }

    /// Applies the committed conf-change entry at `index`: the new membership, or a rejection.
    #[napi(catch_unwind)]
    pub fn apply_conf_change(&mut self, index: f64) -> napi::Result<BindingRaftAppliedConfChange> {
        self.run(|d| d.apply_conf_change(whole("index", index)?))
            .map(Into::into)
    }

    /// Stores `data` as the snapshot at `appliedIndex` and compacts the log up to it.
    #[napi(catch_unwind)]
    pub fn compact(&mut self, applied_index: f64, data: Buffer) -> napi::Result<bool> {
        let data = data.to_vec();
        self.run(|d| d.compact(whole("appliedIndex", applied_index)?, data))
    }

    #[napi(catch_unwind)]
    pub fn status(&mut self) -> napi::Result<BindingRaftStatus> {
        self.run(|d| Ok(d.status())).map(Into::into)
    }

    /// Releases the data directory; later calls fail with `ERR_ACP_CLOSED`.
    #[napi]
    pub fn close(&mut self) {
        self.inner = None;
    }
}
