//! Membership changes that must never wedge or brick a cluster: a committed conf change raft-rs
//! refuses is a no-op on every replica and at every replay, and a removed node (the leader
//! included) stops taking part while the remaining voters go on.

#![allow(clippy::unwrap_used)]

mod sim;

use dwcp_acp::{ConfChangeKind, Role};
use sim::Cluster;

fn single_leader(id: u64) -> Cluster {
    let mut c = Cluster::new(&[id]);
    c.node(id).driver().campaign().unwrap();
    c.settle();
    assert_eq!(c.leader(), Some(id));
    c
}

#[test]
fn removing_the_last_voter_commits_as_a_rejected_no_op_and_stays_one_after_restart() {
    let mut c = single_leader(1);
    let index = c
        .node(1)
        .driver()
        .propose_conf_change(ConfChangeKind::RemoveNode, 1, Vec::new())
        .unwrap();
    c.settle();
    let (at, applied) = c.nodes[&1].conf_changes.last().cloned().unwrap();
    assert_eq!(at, index);
    assert_eq!(applied.change, Some((ConfChangeKind::RemoveNode, 1)));
    let why = applied
        .rejected
        .expect("raft-rs refuses to remove the last voter");
    assert!(why.contains("removed all voters"), "{why}");
    assert_eq!(applied.membership.voters, vec![1]);
    // The node still leads and commits.
    c.propose(1, b"after");
    assert_eq!(c.state(1), [b"after".to_vec()].as_slice());
    let s = c.node(1).driver().status();
    assert_eq!((s.role, s.removed), (Role::Leader, false));

    c.close(1);
    c.reopen(1);
    c.settle();
    c.node(1).driver().campaign().unwrap();
    c.settle();
    let replayed = &c.nodes[&1].conf_changes;
    let (at, again) = replayed.last().cloned().unwrap();
    assert_eq!(at, index);
    assert!(
        again.rejected.is_some(),
        "the replay reaches the same verdict"
    );
    assert_eq!(c.state(1), [b"after".to_vec()].as_slice());
    assert_eq!(c.leader(), Some(1));
}

#[test]
fn an_entry_a_crash_left_unapplied_is_rejected_when_the_log_is_replayed() {
    // What a node of the version that threw out of its apply loop left on disk: the committed
    // entry, with no recorded result.
    let mut c = single_leader(1);
    let d = c.node(1).driver();
    let index = d
        .propose_conf_change(ConfChangeKind::RemoveNode, 1, Vec::new())
        .unwrap();
    let rd = d.ready().unwrap();
    assert!(rd.committed_entries.iter().any(|e| e.index == index));
    c.close(1);

    c.reopen(1);
    c.settle();
    let (at, applied) = c.nodes[&1].conf_changes.last().cloned().unwrap();
    assert_eq!(at, index);
    assert!(applied.rejected.is_some());
    c.node(1).driver().campaign().unwrap();
    c.settle();
    c.propose(1, b"serving");
    assert_eq!(c.state(1), [b"serving".to_vec()].as_slice());
}

#[test]
fn a_removed_leader_hands_over_leadership_and_retires() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let old = c.elect(100);
    let rest: Vec<u64> = [1, 2, 3].into_iter().filter(|&id| id != old).collect();
    c.propose(old, b"before");
    c.node(old)
        .driver()
        .propose_conf_change(ConfChangeKind::RemoveNode, old, Vec::new())
        .unwrap();
    c.settle();
    // The handover is a TimeoutNow to the most caught-up voter: a new leader without waiting
    // for an election timeout (10 ticks here), and the old one learns of it from the replies to
    // its next heartbeat.
    let mut ticks = 0;
    while c.leader().is_none_or(|l| l == old) {
        assert!(ticks < 4, "no handover after {ticks} ticks");
        c.tick(1);
        ticks += 1;
    }
    let new = c.leader().unwrap();
    assert!(rest.contains(&new), "leader {new} is one of {rest:?}");
    let s = c.node(old).driver().status();
    assert!(s.removed);
    assert_ne!(s.role, Role::Leader);
    c.propose(new, b"after");
    for &id in &rest {
        assert_eq!(c.node(id).driver().status().membership.voters, rest);
        assert_eq!(
            c.state(id),
            [b"before".to_vec(), b"after".to_vec()].as_slice()
        );
    }
    let err = c
        .node(old)
        .driver()
        .propose(b"x".to_vec(), Vec::new())
        .unwrap_err();
    assert_eq!(err.code(), "ERR_ACP_REMOVED");
    // Retired: ticking it for many election timeouts starts no campaign.
    c.tick(50);
    assert_eq!(c.leader(), Some(new));
    assert_eq!(c.node(old).driver().status().role, Role::Follower);
}

#[test]
fn a_removed_leader_that_cannot_hand_over_retires_and_the_rest_elect_one() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let old = c.elect(100);
    let rest: Vec<u64> = [1, 2, 3].into_iter().filter(|&id| id != old).collect();
    c.node(old)
        .driver()
        .propose_conf_change(ConfChangeKind::RemoveNode, old, Vec::new())
        .unwrap();
    c.settle();
    // Its TimeoutNow is lost with everything else it sends from now on.
    c.isolated.insert(old);
    c.tick(40);
    assert!(c.node(old).driver().status().removed);
    c.isolated.clear();
    let new = c.elect(40);
    assert!(rest.contains(&new));
    c.propose(new, b"after");
    for &id in &rest {
        assert_eq!(c.state(id), [b"after".to_vec()].as_slice());
    }
}

#[test]
fn a_removed_follower_retires_and_the_rest_go_on() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let leader = c.elect(100);
    let gone = [1, 2, 3].into_iter().find(|&id| id != leader).unwrap();
    c.node(leader)
        .driver()
        .propose_conf_change(ConfChangeKind::RemoveNode, gone, Vec::new())
        .unwrap();
    c.settle();
    assert!(c.node(gone).driver().status().removed);
    let err = c.node(gone).driver().campaign().unwrap_err();
    assert_eq!(err.code(), "ERR_ACP_REMOVED");
    c.tick(50);
    assert_eq!(c.leader(), Some(leader));
    c.propose(leader, b"two voters");
    let voters: Vec<u64> = [1, 2, 3].into_iter().filter(|&id| id != gone).collect();
    assert_eq!(c.node(leader).driver().status().membership.voters, voters);
}
