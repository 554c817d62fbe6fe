//! An in-memory network of `RaftDriver`s on a virtual clock, in the manner of quinn-proto's
//! `Pair`: messages are routed by `to` in a loop, time passes only by `tick`, nothing sleeps.
//! Each node has a toy state machine (the list of applied payloads) that follows the Ready
//! contract a TS caller must follow.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;

use dwcp_acp::{AppliedConfChange, EntryKind, NodeConfig, RaftDriver, ReadState, Role};

/// The caller side of one node: the driver plus its in-memory state machine.
pub struct SimNode {
    pub config: NodeConfig,
    pub dir: PathBuf,
    pub driver: Option<RaftDriver>,
    /// Applied non-empty normal payloads, in order.
    pub state: Vec<Vec<u8>>,
    pub applied: u64,
    pub read_states: Vec<ReadState>,
    pub snapshots_restored: usize,
    /// What each applied conf-change entry did, by index, in apply order (replays included).
    pub conf_changes: Vec<(u64, AppliedConfChange)>,
}

impl SimNode {
    pub fn driver(&mut self) -> &mut RaftDriver {
        self.driver.as_mut().expect("node is closed")
    }

    /// The state machine as snapshot bytes.
    pub fn encode_state(state: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for item in state {
            out.extend_from_slice(&u32::try_from(item.len()).unwrap().to_le_bytes());
            out.extend_from_slice(item);
        }
        out
    }

    fn decode_state(mut data: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while !data.is_empty() {
            let len = u32::from_le_bytes(data[..4].try_into().unwrap()) as usize;
            out.push(data[4..4 + len].to_vec());
            data = &data[4 + len..];
        }
        out
    }
}

pub struct Cluster {
    pub tmp: tempfile::TempDir,
    pub nodes: BTreeMap<u64, SimNode>,
    /// Nodes cut off from everyone: messages from or to them are dropped.
    pub isolated: BTreeSet<u64>,
    queue: VecDeque<(u64, dwcp_acp::OutgoingMessage)>,
    /// When a leader asks for a snapshot, compact it (what the TS caller is told to do).
    pub auto_snapshot: bool,
}

pub fn config(id: u64, voters: &[u64]) -> NodeConfig {
    NodeConfig {
        election_tick: 10,
        heartbeat_tick: 2,
        initial_voters: voters.to_vec(),
        ..NodeConfig::new(id)
    }
}

impl Cluster {
    /// A new cluster whose voters are `ids`, bootstrapped in fresh directories.
    pub fn new(ids: &[u64]) -> Self {
        let mut c = Cluster {
            tmp: tempfile::tempdir().unwrap(),
            nodes: BTreeMap::new(),
            isolated: BTreeSet::new(),
            queue: VecDeque::new(),
            auto_snapshot: true,
        };
        for &id in ids {
            c.add(config(id, ids));
        }
        c
    }

    /// Opens a node in its own directory under the cluster's temp dir.
    pub fn add(&mut self, config: NodeConfig) {
        let dir = self.tmp.path().join(format!("node-{}", config.id));
        let driver = RaftDriver::open(&config, &dir).unwrap();
        self.nodes.insert(
            config.id,
            SimNode {
                config,
                dir,
                driver: Some(driver),
                state: Vec::new(),
                applied: 0,
                read_states: Vec::new(),
                snapshots_restored: 0,
                conf_changes: Vec::new(),
            },
        );
    }

    pub fn node(&mut self, id: u64) -> &mut SimNode {
        self.nodes.get_mut(&id).unwrap()
    }

    /// Drops the driver and the in-memory state machine, as a process crash would.
    pub fn close(&mut self, id: u64) {
        let n = self.node(id);
        n.driver = None;
        n.state.clear();
        n.applied = 0;
        n.read_states.clear();
    }

    pub fn reopen(&mut self, id: u64) {
        let n = self.node(id);
        n.driver = Some(RaftDriver::open(&n.config, &n.dir).unwrap());
    }

    /// Runs every node's Ready cycle and delivers messages until the network is quiet.
    pub fn settle(&mut self) {
        for _round in 0..10_000 {
            let mut busy = false;
            let ids: Vec<u64> = self.nodes.keys().copied().collect();
            for id in ids {
                busy |= self.drain_ready(id);
            }
            while let Some((from, m)) = self.queue.pop_front() {
                busy = true;
                if self.isolated.contains(&from) || self.isolated.contains(&m.to) {
                    continue;
                }
                let Some(target) = self.nodes.get_mut(&m.to) else {
                    continue;
                };
                let Some(driver) = target.driver.as_mut() else {
                    continue;
                };
                match driver.step(&m.bytes) {
                    Ok(()) => {}
                    // A response from a peer that is not (yet) in this node's configuration, or
                    // anything sent to a node that has retired after its removal.
                    Err(e)
                        if e.code() == "ERR_ACP_UNKNOWN_PEER" || e.code() == "ERR_ACP_REMOVED" => {}
                    Err(e) => panic!("node {} refused a message from {from}: {e}", m.to),
                }
            }
            if !busy {
                return;
            }
        }
        panic!("the cluster did not settle");
    }

    fn drain_ready(&mut self, id: u64) -> bool {
        let auto_snapshot = self.auto_snapshot;
        let n = self.nodes.get_mut(&id).unwrap();
        let Some(driver) = n.driver.as_mut() else {
            return false;
        };
        let mut busy = false;
        while driver.has_ready() {
            busy = true;
            let rd = driver.ready().unwrap();
            if let Some(s) = &rd.snapshot {
                n.state = SimNode::decode_state(&s.data);
                n.applied = s.index;
                n.snapshots_restored += 1;
            }
            for e in &rd.committed_entries {
                assert_eq!(
                    e.index,
                    n.applied + 1,
                    "node {id}: entries applied in order"
                );
                n.applied = e.index;
                match e.kind {
                    EntryKind::Normal if !e.data.is_empty() => n.state.push(e.data.clone()),
                    EntryKind::Normal => {}
                    _ => {
                        let applied = driver.apply_conf_change(e.index).unwrap();
                        n.conf_changes.push((e.index, applied));
                    }
                }
            }
            n.read_states.extend(rd.read_states.iter().cloned());
            for m in rd.messages {
                self.queue.push_back((id, m));
            }
            if rd.snapshot_requested && auto_snapshot {
                let data = SimNode::encode_state(&n.state);
                driver.compact(n.applied, data).unwrap();
            }
        }
        busy
    }

    /// `n` ticks of every open node, settling after each.
    pub fn tick(&mut self, n: usize) {
        for _ in 0..n {
            for node in self.nodes.values_mut() {
                if let Some(d) = node.driver.as_mut() {
                    d.tick().unwrap();
                }
            }
            self.settle();
        }
    }

    /// The leader every connected open node agrees on, if any.
    pub fn leader(&self) -> Option<u64> {
        let leaders: Vec<u64> = self
            .nodes
            .iter()
            .filter(|(id, _)| !self.isolated.contains(id))
            .filter_map(|(id, n)| n.driver.as_ref().map(|d| (id, d.status())))
            .filter(|(_, s)| s.role == Role::Leader)
            .map(|(id, _)| *id)
            .collect();
        match leaders.as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }

    /// Ticks until a leader is elected among the connected nodes; fails after `max` ticks.
    pub fn elect(&mut self, max: usize) -> u64 {
        for _ in 0..max {
            if let Some(l) = self.leader() {
                return l;
            }
            self.tick(1);
        }
        panic!("no leader after {max} ticks");
    }

    pub fn propose(&mut self, id: u64, data: &[u8]) -> u64 {
        let index = self
            .node(id)
            .driver()
            .propose(data.to_vec(), Vec::new())
            .unwrap();
        self.settle();
        index
    }

    pub fn state(&self, id: u64) -> &[Vec<u8>] {
        &self.nodes[&id].state
    }
}
