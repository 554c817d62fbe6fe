//! `DiskStorage`: raft-rs's log, hard state, conf states and latest snapshot in a redb file, every
//! write committed with `Durability::Immediate` (fsync) before the call returns.
//!
//! The whole store is also mirrored in memory, so raft-rs's reads never touch the disk; the
//! mirror is only changed after the disk commit succeeded. The log is bounded by `compact`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};
use redb::{Database, Durability, ReadableTable, TableDefinition, WriteTransaction};

use crate::error::{AcpError, Result};

/// Log entries by index, each a protobuf `eraftpb.Entry`.
const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("entries");
/// The conf state in force from each index on: one row at the snapshot index and one per
/// conf change applied after it, so a snapshot taken at any applied index gets the right one.
const CONF_STATES: TableDefinition<u64, &[u8]> = TableDefinition::new("conf_states");
/// Single values: format, node id, hard state, snapshot.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

const FORMAT_KEY: &str = "format";
const FORMAT: &[u8] = b"dwcp-acp/1";
const NODE_ID_KEY: &str = "node_id";
const HARD_STATE_KEY: &str = "hard_state";
const SNAPSHOT_KEY: &str = "snapshot";

/// The file inside the data directory.
pub const DB_FILE: &str = "raft.redb";

/// A durable `raft::Storage`. Open one per data directory; redb locks the file.
pub struct DiskStorage {
    db: Database,
    path: PathBuf,
    hard_state: HardState,
    snapshot: Snapshot,
    /// Contiguous, starting at `snapshot.index + 1`.
    entries: Vec<Entry>,
    conf_states: BTreeMap<u64, ConfState>,
    /// Set when raft-rs asked for a snapshot the stored one cannot serve (too old, or the peer
    /// is not in its conf state): the caller should `compact` to make a fresh one.
    snapshot_wanted: AtomicBool,
}

impl std::fmt::Debug for DiskStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskStorage")
            .field("path", &self.path)
            .field("first_index", &self.first())
            .field("last_index", &self.last())
            .finish_non_exhaustive()
    }
}

fn db_err<E: Into<redb::Error>>(op: &'static str) -> impl FnOnce(E) -> AcpError {
    move |e| match e.into() {
        redb::Error::Corrupted(what) => AcpError::Corrupt(format!("{op}: {what}")),
        other => AcpError::storage(op, other),
    }
}

fn decode<M: protobuf::Message>(what: &str, bytes: &[u8]) -> Result<M> {
    M::parse_from_bytes(bytes)
        .map_err(|e| AcpError::Corrupt(format!("{what} does not decode: {e}")))
}

fn encode<M: protobuf::Message>(m: &M) -> Result<Vec<u8>> {
    m.write_to_bytes()
        .map_err(|e| AcpError::storage("encode", e))
}

impl DiskStorage {
    /// Opens (or creates) the store in `dir` for node `node_id`. A directory written by another
    /// node id is refused, so two nodes can never share a log by mistake.
    pub fn open(dir: impl AsRef<Path>, node_id: u64) -> Result<Self> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| AcpError::storage("create data dir", e))?;
        let path = dir.join(DB_FILE);
        let db = Database::create(&path).map_err(db_err("open"))?;
        // The file may be new: make its directory entry durable too.
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| AcpError::storage("fsync data dir", e))?;

        let mut txn = db.begin_write().map_err(db_err("open"))?;
        txn.set_durability(Durability::Immediate);
        {
            let mut meta = txn.open_table(META).map_err(db_err("open"))?;
            txn.open_table(ENTRIES).map_err(db_err("open"))?;
            txn.open_table(CONF_STATES).map_err(db_err("open"))?;
            let format = meta
                .get(FORMAT_KEY)
                .map_err(db_err("open"))?
                .map(|v| v.value().to_vec());
            match format {
                Some(f) if f != FORMAT => {
                    return Err(AcpError::Corrupt(format!(
                        "unknown format {:?} in {}",
                        String::from_utf8_lossy(&f),
                        path.display()
                    )))
                }
                Some(_) => {}
                None => {
                    meta.insert(FORMAT_KEY, FORMAT).map_err(db_err("open"))?;
                }
            }
            let stored_id = meta
                .get(NODE_ID_KEY)
                .map_err(db_err("open"))?
                .map(|v| v.value().to_vec());
            match stored_id {
                Some(bytes) => {
                    let stored = <[u8; 8]>::try_from(bytes.as_slice())
                        .map(u64::from_le_bytes)
                        .map_err(|_| AcpError::Corrupt("node id record".into()))?;
                    if stored != node_id {
                        return Err(AcpError::config(
                            "id",
                            format!("{} belongs to node {stored}, not {node_id}", dir.display()),
                        ));
                    }
                }
                None => {
                    meta.insert(NODE_ID_KEY, node_id.to_le_bytes().as_slice())
                        .map_err(db_err("open"))?;
                }
            }
        }
        txn.commit().map_err(db_err("open"))?;

        let mut store = DiskStorage {
            db,
            path,
            hard_state: HardState::default(),
            snapshot: Snapshot::default(),
            entries: Vec::new(),
            conf_states: BTreeMap::new(),
            snapshot_wanted: AtomicBool::new(false),
        };
        store.load()?;
        Ok(store)
    }

    fn load(&mut self) -> Result<()> {
        let txn = self.db.begin_read().map_err(db_err("load"))?;
        let meta = txn.open_table(META).map_err(db_err("load"))?;
        if let Some(v) = meta.get(HARD_STATE_KEY).map_err(db_err("load"))? {
            self.hard_state = decode("hard state", v.value())?;
        }
        if let Some(v) = meta.get(SNAPSHOT_KEY).map_err(db_err("load"))? {
            self.snapshot = decode("snapshot", v.value())?;
        }
        let entries = txn.open_table(ENTRIES).map_err(db_err("load"))?;
        let first = self.snapshot.get_metadata().index + 1;
        for (expected, row) in (first..).zip(entries.iter().map_err(db_err("load"))?) {
            let (k, v) = row.map_err(db_err("load"))?;
            let entry: Entry = decode("log entry", v.value())?;
            if k.value() != expected || entry.index != expected {
                return Err(AcpError::Corrupt(format!(
                    "log gap: expected entry {expected}, found key {} holding entry {}",
                    k.value(),
                    entry.index
                )));
            }
            self.entries.push(entry);
        }
        let confs = txn.open_table(CONF_STATES).map_err(db_err("load"))?;
        for row in confs.iter().map_err(db_err("load"))? {
            let (k, v) = row.map_err(db_err("load"))?;
            self.conf_states
                .insert(k.value(), decode("conf state", v.value())?);
        }
        let (first, last) = (self.first(), self.last());
        if self.hard_state.commit > last || self.hard_state.commit + 1 < first {
            return Err(AcpError::Corrupt(format!(
                "commit {} outside the log [{first}, {last}]",
                self.hard_state.commit
            )));
        }
        Ok(())
    }

    fn write(
        &self,
        op: &'static str,
        f: impl FnOnce(&WriteTransaction) -> Result<()>,
    ) -> Result<()> {
        let mut txn = self.db.begin_write().map_err(db_err(op))?;
        txn.set_durability(Durability::Immediate);
        f(&txn)?;
        txn.commit().map_err(db_err(op))
    }

    fn first(&self) -> u64 {
        self.snapshot.get_metadata().index + 1
    }

    fn last(&self) -> u64 {
        self.snapshot.get_metadata().index + self.entries.len() as u64
    }

    /// True when nothing has been persisted yet: no log, no snapshot, no hard state.
    pub fn is_blank(&self) -> bool {
        self.entries.is_empty()
            && self.snapshot.get_metadata().index == 0
            && self.hard_state == HardState::default()
            && self.conf_states.is_empty()
    }

    /// Writes the first state of a new cluster: a snapshot at `index`/`term` holding `conf`, so
    /// that nodes joining later (with an empty log) are caught up by snapshot, and learn the
    /// membership from it.
    pub fn bootstrap(&mut self, index: u64, term: u64, conf: ConfState) -> Result<()> {
        if !self.is_blank() {
            return Err(AcpError::config(
                "initialVoters",
                "the data directory already holds raft state",
            ));
        }
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = index;
        snap.mut_metadata().term = term;
        snap.mut_metadata().set_conf_state(conf);
        let hs = HardState {
            term,
            commit: index,
            ..HardState::default()
        };
        self.persist(Some(&snap), &[], Some(&hs))
    }

    /// Persists, in one fsync'd transaction and in this order: a snapshot received from the
    /// leader (which replaces the whole log), appended entries (which replace any tail from their
    /// first index on), and the hard state.
    pub fn persist(
        &mut self,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<()> {
        if snapshot.is_none() && entries.is_empty() && hard_state.is_none() {
            return Ok(());
        }
        let mut hs = self.hard_state.clone();
        let (snap_index, last_before) = match snapshot {
            Some(s) => {
                let m = s.get_metadata();
                hs.commit = hs.commit.max(m.index);
                hs.term = hs.term.max(m.term);
                (m.index, m.index)
            }
            None => (self.snapshot.get_metadata().index, self.last()),
        };
        if let Some(first) = entries.first() {
            if first.index <= snap_index {
                return Err(AcpError::storage(
                    "append",
                    format!(
                        "entry {} would overwrite the compacted log (snapshot at {snap_index})",
                        first.index
                    ),
                ));
            }
            if first.index > last_before + 1 {
                return Err(AcpError::storage(
                    "append",
                    format!(
                        "entry {} leaves a gap after the last index {last_before}",
                        first.index
                    ),
                ));
            }
            if entries.windows(2).any(|w| w[1].index != w[0].index + 1) {
                return Err(AcpError::storage("append", "entries are not contiguous"));
            }
        }
        if let Some(h) = hard_state {
            hs = h.clone();
        }
        let conf = snapshot.map(|s| s.get_metadata().get_conf_state().clone());
        self.write("persist", |txn| {
            let mut ents = txn.open_table(ENTRIES).map_err(db_err("persist"))?;
            let mut confs = txn.open_table(CONF_STATES).map_err(db_err("persist"))?;
            let mut meta = txn.open_table(META).map_err(db_err("persist"))?;
            if let (Some(s), Some(conf)) = (snapshot, &conf) {
                ents.retain(|_, _| false).map_err(db_err("persist"))?;
                confs.retain(|_, _| false).map_err(db_err("persist"))?;
                confs
                    .insert(snap_index, encode(conf)?.as_slice())
                    .map_err(db_err("persist"))?;
                meta.insert(SNAPSHOT_KEY, encode(s)?.as_slice())
                    .map_err(db_err("persist"))?;
            }
            if let Some(first) = entries.first() {
                ents.retain_in(first.index.., |_, _| false)
                    .map_err(db_err("persist"))?;
                for e in entries {
                    ents.insert(e.index, encode(e)?.as_slice())
                        .map_err(db_err("persist"))?;
                }
            }
            meta.insert(HARD_STATE_KEY, encode(&hs)?.as_slice())
                .map_err(db_err("persist"))?;
            Ok(())
        })?;

        if let (Some(s), Some(conf)) = (snapshot, conf) {
            self.snapshot = s.clone();
            self.entries.clear();
            self.conf_states.clear();
            self.conf_states.insert(snap_index, conf);
        }
        if let Some(first) = entries.first() {
            let keep = usize::try_from(first.index - self.first()).unwrap_or(usize::MAX);
            self.entries.truncate(keep);
            self.entries.extend_from_slice(entries);
        }
        self.hard_state = hs;
        Ok(())
    }

    /// Persists a new commit index (raft-rs reports it after `advance`).
    pub fn set_commit(&mut self, commit: u64) -> Result<()> {
        let mut hs = self.hard_state.clone();
        hs.commit = commit;
        self.persist(None, &[], Some(&hs))
    }

    /// Records the conf state in force from `index` on (after applying the conf change there).
    pub fn record_conf_state(&mut self, index: u64, conf: &ConfState) -> Result<()> {
        self.write("record conf state", |txn| {
            let mut confs = txn
                .open_table(CONF_STATES)
                .map_err(db_err("record conf state"))?;
            confs
                .insert(index, encode(conf)?.as_slice())
                .map_err(db_err("record conf state"))?;
            Ok(())
        })?;
        self.conf_states.insert(index, conf.clone());
        Ok(())
    }

    /// The conf state recorded exactly at `index`, if a conf change there was applied.
    pub fn recorded_conf_state(&self, index: u64) -> Option<&ConfState> {
        self.conf_states.get(&index)
    }

    /// The conf state in force at `index`.
    pub fn conf_state_at(&self, index: u64) -> ConfState {
        self.conf_states
            .range(..=index)
            .next_back()
            .map(|(_, c)| c.clone())
            .unwrap_or_default()
    }

    /// Stores a snapshot of the state machine at `index` (which must be committed), with the conf
    /// state in force there, and drops the log up to and including `index`. Returns false, and
    /// changes nothing, when the stored snapshot is already at or past `index`.
    pub fn compact(&mut self, index: u64, data: Vec<u8>) -> Result<bool> {
        let snap_index = self.snapshot.get_metadata().index;
        if index <= snap_index {
            return Ok(false);
        }
        if index > self.hard_state.commit {
            return Err(AcpError::config(
                "appliedIndex",
                format!(
                    "{index} is past the commit index {}",
                    self.hard_state.commit
                ),
            ));
        }
        let term = self.term_of(index)?;
        let conf = self.conf_state_at(index);
        let mut snap = Snapshot::default();
        snap.set_data(data.into());
        snap.mut_metadata().index = index;
        snap.mut_metadata().term = term;
        snap.mut_metadata().set_conf_state(conf.clone());
        self.write("compact", |txn| {
            let mut ents = txn.open_table(ENTRIES).map_err(db_err("compact"))?;
            let mut confs = txn.open_table(CONF_STATES).map_err(db_err("compact"))?;
            let mut meta = txn.open_table(META).map_err(db_err("compact"))?;
            ents.retain_in(..=index, |_, _| false)
                .map_err(db_err("compact"))?;
            confs
                .retain_in(..=index, |_, _| false)
                .map_err(db_err("compact"))?;
            confs
                .insert(index, encode(&conf)?.as_slice())
                .map_err(db_err("compact"))?;
            meta.insert(SNAPSHOT_KEY, encode(&snap)?.as_slice())
                .map_err(db_err("compact"))?;
            Ok(())
        })?;
        let drop = usize::try_from(index - snap_index).unwrap_or(usize::MAX);
        self.entries.drain(..drop.min(self.entries.len()));
        self.conf_states = self.conf_states.split_off(&(index + 1));
        self.conf_states.insert(index, conf);
        self.snapshot = snap;
        self.snapshot_wanted.store(false, Ordering::Relaxed);
        Ok(true)
    }

    /// The persisted hard state.
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// The latest conf state recorded.
    pub fn conf_state(&self) -> ConfState {
        self.conf_states
            .values()
            .next_back()
            .cloned()
            .unwrap_or_default()
    }

    /// The stored snapshot (index 0 when there is none).
    pub fn stored_snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The entries in `[low, high)` held in the log (no size limit).
    pub fn entries_in(&self, low: u64, high: u64) -> Result<Vec<Entry>> {
        let (first, last) = (self.first(), self.last());
        if low < first || high > last + 1 || low > high {
            return Err(AcpError::config(
                "index",
                format!("[{low}, {high}) is outside the log [{first}, {last}]"),
            ));
        }
        let lo = usize::try_from(low - first).unwrap_or(usize::MAX);
        let hi = usize::try_from(high - first).unwrap_or(usize::MAX);
        Ok(self.entries[lo..hi].to_vec())
    }

    /// Whether raft-rs asked for a snapshot this store could not serve since the last call.
    pub fn take_snapshot_wanted(&self) -> bool {
        self.snapshot_wanted.swap(false, Ordering::Relaxed)
    }

    /// Whether a snapshot is wanted, without clearing the flag.
    pub fn snapshot_wanted(&self) -> bool {
        self.snapshot_wanted.load(Ordering::Relaxed)
    }

    fn term_of(&self, idx: u64) -> Result<u64> {
        raft::Storage::term(self, idx).map_err(|e| AcpError::storage("term", e))
    }
}

impl raft::Storage for DiskStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(self.hard_state.clone(), self.conf_state()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last() + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let lo = usize::try_from(low - self.first()).unwrap_or(usize::MAX);
        let hi = usize::try_from(high - self.first()).unwrap_or(usize::MAX);
        let mut out = self.entries[lo..hi].to_vec();
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let meta = self.snapshot.get_metadata();
        if idx == meta.index {
            return Ok(meta.term);
        }
        if idx < meta.index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let at = usize::try_from(idx - self.first()).unwrap_or(usize::MAX);
        Ok(self.entries[at].term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let meta = self.snapshot.get_metadata();
        let cs = meta.get_conf_state();
        let has_peer = cs
            .get_voters()
            .iter()
            .chain(cs.get_learners())
            .chain(cs.get_voters_outgoing())
            .any(|id| *id == to);
        // raft-rs's recipient throws away a snapshot whose conf state does not name it, so one
        // taken before the peer was added is useless: ask the caller for a fresh one instead.
        if meta.index == 0 || meta.index < request_index || !has_peer {
            self.snapshot_wanted.store(true, Ordering::Relaxed);
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(self.snapshot.clone())
    }
}
