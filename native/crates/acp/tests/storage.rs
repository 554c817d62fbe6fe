//! `DiskStorage` on its own: what raft-rs asks of it, and that every persisted step survives a
//! reopen (and a killed process) unchanged.

#![allow(clippy::unwrap_used)]

use dwcp_acp::raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use dwcp_acp::raft::{GetEntriesContext, Storage, StorageError};
use dwcp_acp::DiskStorage;

fn entry(index: u64, term: u64, data: &str) -> Entry {
    Entry {
        index,
        term,
        data: data.as_bytes().to_vec().into(),
        ..Entry::default()
    }
}

fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
    HardState {
        term,
        vote,
        commit,
        ..HardState::default()
    }
}

fn voters(ids: &[u64]) -> ConfState {
    let mut cs = ConfState::default();
    cs.set_voters(ids.to_vec());
    cs
}

/// Everything observable, for comparing a store with its reopened self.
fn observe(s: &DiskStorage) -> (HardState, ConfState, Snapshot, u64, u64, Vec<Entry>) {
    let (first, last) = (s.first_index().unwrap(), s.last_index().unwrap());
    let entries = s
        .entries(first, last + 1, None, GetEntriesContext::empty(false))
        .unwrap();
    let state = s.initial_state().unwrap();
    (
        state.hard_state,
        state.conf_state,
        s.stored_snapshot().clone(),
        first,
        last,
        entries,
    )
}

/// Runs `step` on the store, then checks a reopened store sees exactly the same.
fn persisted(
    dir: &std::path::Path,
    store: DiskStorage,
    step: impl FnOnce(&mut DiskStorage),
) -> DiskStorage {
    let mut store = store;
    step(&mut store);
    let before = observe(&store);
    drop(store);
    let reopened = DiskStorage::open(dir, 1).unwrap();
    assert_eq!(observe(&reopened), before);
    reopened
}

#[test]
fn every_persisted_step_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = DiskStorage::open(dir.path(), 1).unwrap();
    assert!(store.is_blank());
    let store = persisted(dir.path(), store, |s| {
        s.bootstrap(5, 5, voters(&[1, 2, 3])).unwrap()
    });
    let store = persisted(dir.path(), store, |s| {
        s.persist(
            None,
            &[entry(6, 5, "a"), entry(7, 5, "b"), entry(8, 5, "c")],
            Some(&hard_state(5, 1, 6)),
        )
        .unwrap()
    });
    assert_eq!(observe(&store).4, 8);
    let store = persisted(dir.path(), store, |s| s.set_commit(8).unwrap());
    let store = persisted(dir.path(), store, |s| {
        s.record_conf_state(8, &voters(&[1, 2, 3, 4])).unwrap()
    });
    let store = persisted(dir.path(), store, |s| {
        assert!(s.compact(7, b"sm@7".to_vec()).unwrap())
    });
    let (.., snap, first, last, entries) = observe(&store);
    assert_eq!(
        (
            first,
            last,
            snap.get_metadata().index,
            snap.get_metadata().term
        ),
        (8, 8, 7, 5)
    );
    assert_eq!(snap.data.as_ref(), b"sm@7");
    assert_eq!(
        snap.get_metadata().get_conf_state(),
        &voters(&[1, 2, 3]),
        "conf at 7, not at 8"
    );
    assert_eq!(entries, vec![entry(8, 5, "c")]);
    assert_eq!(
        store.initial_state().unwrap().conf_state,
        voters(&[1, 2, 3, 4])
    );
    assert_eq!(store.conf_state_at(8), voters(&[1, 2, 3, 4]));

    // A snapshot from the leader replaces the log and the membership.
    let mut received = Snapshot::default();
    received.mut_metadata().index = 20;
    received.mut_metadata().term = 7;
    received.mut_metadata().set_conf_state(voters(&[1, 2]));
    received.data = b"sm@20".to_vec().into();
    let store = persisted(dir.path(), store, |s| {
        s.persist(
            Some(&received),
            &[entry(21, 7, "d")],
            Some(&hard_state(7, 0, 20)),
        )
        .unwrap()
    });
    let (hs, cs, snap, first, last, entries) = observe(&store);
    assert_eq!((hs.term, hs.commit, first, last), (7, 20, 21, 21));
    assert_eq!(cs, voters(&[1, 2]));
    assert_eq!(snap, received);
    assert_eq!(entries, vec![entry(21, 7, "d")]);
}

#[test]
fn a_conflicting_tail_is_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let store = DiskStorage::open(dir.path(), 1).unwrap();
    let store = persisted(dir.path(), store, |s| {
        let ents: Vec<Entry> = (1..=5).map(|i| entry(i, 1, "old")).collect();
        s.persist(None, &ents, Some(&hard_state(1, 1, 2))).unwrap();
    });
    let store = persisted(dir.path(), store, |s| {
        s.persist(
            None,
            &[entry(3, 2, "new3"), entry(4, 2, "new4")],
            Some(&hard_state(2, 0, 2)),
        )
        .unwrap();
    });
    let (.., first, last, entries) = observe(&store);
    assert_eq!((first, last), (1, 4), "index 5 of the old term is gone");
    assert_eq!(
        entries,
        vec![
            entry(1, 1, "old"),
            entry(2, 1, "old"),
            entry(3, 2, "new3"),
            entry(4, 2, "new4")
        ]
    );
    assert_eq!(
        store.term(5),
        Err(dwcp_acp::raft::Error::Store(StorageError::Unavailable))
    );
}

#[test]
fn appends_that_would_leave_a_gap_or_rewrite_the_snapshot_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = DiskStorage::open(dir.path(), 1).unwrap();
    store.bootstrap(5, 5, voters(&[1])).unwrap();
    let gap = store.persist(None, &[entry(8, 5, "x")], None).unwrap_err();
    assert_eq!(gap.code(), "ERR_ACP_STORAGE");
    let old = store.persist(None, &[entry(5, 5, "x")], None).unwrap_err();
    assert_eq!(old.code(), "ERR_ACP_STORAGE");
    assert_eq!(observe(&store).4, 5, "nothing was written");
    assert!(
        store.bootstrap(5, 5, voters(&[1])).is_err(),
        "bootstrap only a blank store"
    );
}

#[test]
fn reads_below_the_snapshot_are_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = DiskStorage::open(dir.path(), 1).unwrap();
    store.bootstrap(5, 5, voters(&[1, 2])).unwrap();
    let ctx = || GetEntriesContext::empty(false);
    assert_eq!(store.term(5).unwrap(), 5);
    assert_eq!(
        store.term(4),
        Err(dwcp_acp::raft::Error::Store(StorageError::Compacted))
    );
    assert_eq!(
        store.entries(3, 6, None, ctx()),
        Err(dwcp_acp::raft::Error::Store(StorageError::Compacted))
    );
    // A snapshot for a peer the stored one does not name is asked of the caller instead.
    assert_eq!(
        store.snapshot(0, 3),
        Err(dwcp_acp::raft::Error::Store(
            StorageError::SnapshotTemporarilyUnavailable
        ))
    );
    assert!(store.take_snapshot_wanted());
    assert!(!store.take_snapshot_wanted());
    assert_eq!(store.snapshot(0, 2).unwrap().get_metadata().index, 5);
    assert!(
        store.compact(6, Vec::new()).is_err(),
        "cannot compact past the commit index"
    );
}

/// The child half of `a_killed_writer_leaves_a_consistent_log`: appends forever, printing each
/// index once its persist call returned.
#[test]
#[ignore = "run as a child process by a_killed_writer_leaves_a_consistent_log"]
fn child_writer() {
    use std::io::Write;
    let Some(dir) = std::env::var_os("DWCP_ACP_CHILD_DIR") else {
        return;
    };
    let mut store = DiskStorage::open(&dir, 1).unwrap();
    let mut out = std::io::stdout();
    for i in 1.. {
        // Every fifth append rewrites the previous two entries in a new term.
        let (first, term) = if i % 5 == 0 && i > 2 {
            (i - 2, i)
        } else {
            (i, 1)
        };
        let ents: Vec<Entry> = (first..=i).map(|j| entry(j, term, "payload")).collect();
        store
            .persist(None, &ents, Some(&hard_state(term, 1, first - 1)))
            .unwrap();
        writeln!(out, "{i}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn a_killed_writer_leaves_a_consistent_log() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "child_writer",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("DWCP_ACP_CHILD_DIR", dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut acked = 0u64;
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        if let Ok(i) = line.unwrap().trim().parse::<u64>() {
            acked = i;
            if acked >= 40 {
                break;
            }
        }
    }
    // SIGKILL: no destructors, no flush; only what was committed survives.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(acked >= 40);
    let store = DiskStorage::open(dir.path(), 1).unwrap();
    let (hs, _, _, first, last, entries) = observe(&store);
    assert_eq!(first, 1);
    assert!(
        last >= acked,
        "acknowledged entry {acked} lost (last {last})"
    );
    assert!(hs.commit < last);
    for (e, i) in entries.iter().zip(1..) {
        assert_eq!(e.index, i);
        assert_eq!(e.data.as_ref(), b"payload");
    }
}
