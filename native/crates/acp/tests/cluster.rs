//! Whole-cluster behaviour of `RaftDriver`, stepped in memory on a virtual clock (see `sim`).

#![allow(clippy::unwrap_used)]

mod sim;

use dwcp_acp::{ConfChangeKind, RaftDriver, Role, BOOTSTRAP_INDEX};
use sim::{config, Cluster, SimNode};

fn payloads(items: &[&str]) -> Vec<Vec<u8>> {
    items.iter().map(|s| s.as_bytes().to_vec()).collect()
}

#[test]
fn three_nodes_elect_a_leader_and_commit_in_order() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let leader = c.elect(100);
    for id in [1, 2, 3] {
        let s = c.node(id).driver().status();
        assert_eq!(s.leader_id, leader, "node {id} knows the leader");
        assert_eq!(s.membership.voters, vec![1, 2, 3]);
    }
    let first = c.propose(leader, b"a");
    let second = c.propose(leader, b"b");
    assert_eq!(second, first + 1);
    c.propose(leader, b"c");
    for id in [1, 2, 3] {
        assert_eq!(
            c.state(id),
            payloads(&["a", "b", "c"]).as_slice(),
            "node {id}"
        );
        let s = c.node(id).driver().status();
        assert_eq!(s.commit, first + 2);
        assert_eq!(s.applied, first + 2);
    }
}

#[test]
fn a_single_node_cluster_commits_alone() {
    let mut c = Cluster::new(&[7]);
    c.node(7).driver().campaign().unwrap();
    c.settle();
    assert_eq!(c.leader(), Some(7));
    c.propose(7, b"solo");
    assert_eq!(c.state(7), payloads(&["solo"]).as_slice());
}

#[test]
fn followers_refuse_proposals_and_name_the_leader() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let leader = c.elect(100);
    let follower = [1, 2, 3].into_iter().find(|&id| id != leader).unwrap();
    let err = c
        .node(follower)
        .driver()
        .propose(b"x".to_vec(), Vec::new())
        .unwrap_err();
    assert_eq!(err.code(), "ERR_ACP_NOT_LEADER");
    assert!(matches!(err, dwcp_acp::AcpError::NotLeader { leader: l } if l == leader));
}

#[test]
fn an_isolated_leader_cannot_commit_while_the_majority_can() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let old = c.elect(100);
    c.propose(old, b"before");
    c.isolated.insert(old);
    let lost_index = c.propose(old, b"lost");
    c.tick(5);
    assert_eq!(
        c.state(old),
        payloads(&["before"]).as_slice(),
        "minority commits nothing"
    );
    assert!(c.node(old).driver().status().commit < lost_index);

    let new = c.elect(100);
    assert_ne!(new, old);
    c.propose(new, b"kept");
    let majority: Vec<u64> = [1, 2, 3].into_iter().filter(|&id| id != old).collect();
    for &id in &majority {
        assert_eq!(
            c.state(id),
            payloads(&["before", "kept"]).as_slice(),
            "node {id}"
        );
    }
    // check-quorum: the old leader steps down on its own within two election timeouts.
    c.tick(20);
    assert_ne!(c.node(old).driver().status().role, Role::Leader);
    assert_eq!(c.state(old), payloads(&["before"]).as_slice());

    // Healed, the old leader's uncommitted tail is overwritten by the new leader's log.
    c.isolated.clear();
    c.tick(30);
    for id in [1, 2, 3] {
        assert_eq!(
            c.state(id),
            payloads(&["before", "kept"]).as_slice(),
            "node {id}"
        );
    }
    let healed = c
        .node(old)
        .driver()
        .storage()
        .entries_in(lost_index, lost_index + 1)
        .unwrap();
    assert_ne!(
        healed[0].data.as_ref(),
        b"lost",
        "the conflicting entry was replaced on disk"
    );
}

#[test]
fn a_restarted_follower_catches_up_from_its_log() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let leader = c.elect(100);
    c.propose(leader, b"one");
    let follower = [1, 2, 3].into_iter().find(|&id| id != leader).unwrap();
    c.close(follower);
    c.propose(leader, b"two");
    c.propose(leader, b"three");
    c.reopen(follower);
    let s = c.node(follower).driver().status();
    assert_eq!(
        s.applied, BOOTSTRAP_INDEX,
        "applied restarts at the snapshot index"
    );
    c.tick(5);
    assert_eq!(
        c.state(follower),
        payloads(&["one", "two", "three"]).as_slice()
    );
}

#[test]
fn a_restarted_follower_catches_up_from_a_snapshot_after_compaction() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let leader = c.elect(100);
    c.propose(leader, b"one");
    let follower = [1, 2, 3].into_iter().find(|&id| id != leader).unwrap();
    c.close(follower);
    for i in 0..10 {
        c.propose(leader, format!("e{i}").as_bytes());
    }
    // Every open node compacts at what it applied: the follower's next index is gone.
    let open: Vec<u64> = [1, 2, 3].into_iter().filter(|&id| id != follower).collect();
    for id in open {
        let n = c.node(id);
        let (applied, data) = (n.applied, SimNode::encode_state(&n.state));
        assert!(n.driver().compact(applied, data).unwrap());
        assert_eq!(n.driver().status().first_index, applied + 1);
    }
    let restored_before = c.nodes[&follower].snapshots_restored;
    c.reopen(follower);
    c.tick(5);
    let expected: Vec<Vec<u8>> = std::iter::once(b"one".to_vec())
        .chain((0..10).map(|i| format!("e{i}").into_bytes()))
        .collect();
    assert_eq!(c.state(follower), expected.as_slice());
    assert_eq!(
        c.nodes[&follower].snapshots_restored - restored_before,
        2,
        "the stored one at open, then the leader's"
    );

    // The follower restarts again: this time its own stored snapshot rebuilds the state.
    let leader_applied = c.node(leader).applied;
    c.close(follower);
    c.reopen(follower);
    c.tick(3);
    assert_eq!(c.state(follower), expected.as_slice());
    assert_eq!(c.node(follower).applied, leader_applied);
}

#[test]
fn a_fourth_node_joins_by_conf_change_and_snapshot() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let leader = c.elect(100);
    c.propose(leader, b"before-join");
    c.add(config(4, &[]));
    assert!(c.node(4).driver().status().membership.voters.is_empty());
    let index = c
        .node(leader)
        .driver()
        .propose_conf_change(ConfChangeKind::AddNode, 4, b"join".to_vec())
        .unwrap();
    c.settle();
    c.tick(10);
    for id in [1, 2, 3, 4] {
        let s = c.node(id).driver().status();
        assert_eq!(s.membership.voters, vec![1, 2, 3, 4], "node {id}");
        assert!(s.commit >= index);
    }
    assert_eq!(
        c.nodes[&4].snapshots_restored, 1,
        "node 4 was caught up by snapshot"
    );
    c.propose(leader, b"after-join");
    for id in [1, 2, 3, 4] {
        assert_eq!(
            c.state(id),
            payloads(&["before-join", "after-join"]).as_slice(),
            "node {id}"
        );
    }
    // With 4 voters, a majority is 3: two nodes cut off leave the leader unable to commit.
    let others: Vec<u64> = [1, 2, 3, 4]
        .into_iter()
        .filter(|&id| id != leader)
        .take(2)
        .collect();
    c.isolated.extend(others);
    c.node(leader)
        .driver()
        .propose(b"stuck".to_vec(), Vec::new())
        .unwrap();
    c.settle();
    assert_eq!(c.state(leader).len(), 2);
}

#[test]
fn only_one_conf_change_at_a_time() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let leader = c.elect(100);
    c.isolated
        .extend([1, 2, 3].into_iter().filter(|&id| id != leader));
    let d = c.node(leader).driver();
    d.propose_conf_change(ConfChangeKind::AddLearner, 9, Vec::new())
        .unwrap();
    let err = d
        .propose_conf_change(ConfChangeKind::AddNode, 10, Vec::new())
        .unwrap_err();
    assert_eq!(err.code(), "ERR_ACP_PROPOSAL_DROPPED");
}

#[test]
fn ready_refuses_to_go_on_with_an_unapplied_conf_change() {
    let mut c = Cluster::new(&[1]);
    c.node(1).driver().campaign().unwrap();
    c.settle();
    let d = c.node(1).driver();
    let index = d
        .propose_conf_change(ConfChangeKind::AddLearner, 2, Vec::new())
        .unwrap();
    let rd = d.ready().unwrap();
    assert!(rd.committed_entries.iter().any(|e| e.index == index));
    assert_eq!(d.ready().unwrap_err().code(), "ERR_ACP_CONTRACT");
    let m = d.apply_conf_change(index).unwrap().membership;
    assert_eq!((m.voters, m.learners), (vec![1], vec![2]));
    assert_eq!(
        d.apply_conf_change(index).unwrap_err().code(),
        "ERR_ACP_CONTRACT"
    );
    d.ready().unwrap();
}

#[test]
fn garbage_and_misaddressed_messages_are_typed_errors() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let leader = c.elect(100);
    let d = c.node(1).driver();
    for bytes in [
        &[0xff, 0xff, 0xff, 0xff][..],
        &[0x0a, 0x80],
        b"definitely not protobuf",
        &[],
    ] {
        let err = d.step(bytes).unwrap_err();
        assert_eq!(err.code(), "ERR_ACP_BAD_MESSAGE", "{bytes:?}");
    }
    // Well-formed, but for another node, or a local-only message type.
    let mut m = dwcp_acp::raft::eraftpb::Message {
        to: 2,
        from: 3,
        ..Default::default()
    };
    let bytes = protobuf::Message::write_to_bytes(&m).unwrap();
    assert_eq!(d.step(&bytes).unwrap_err().code(), "ERR_ACP_BAD_MESSAGE");
    m.to = 1;
    m.set_msg_type(dwcp_acp::raft::eraftpb::MessageType::MsgHup);
    let bytes = protobuf::Message::write_to_bytes(&m).unwrap();
    assert_eq!(d.step(&bytes).unwrap_err().code(), "ERR_ACP_BAD_MESSAGE");
    // The node is still fine.
    c.propose(leader, b"still-works");
    assert_eq!(c.state(1), payloads(&["still-works"]).as_slice());
}

#[test]
fn read_index_confirms_leadership_before_answering() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let leader = c.elect(100);
    c.propose(leader, b"x");
    let commit = c.node(leader).driver().status().commit;
    c.node(leader).driver().read_index(b"r1".to_vec()).unwrap();
    c.settle();
    let rs = &c.node(leader).read_states;
    assert_eq!(rs.len(), 1);
    assert_eq!(
        (rs[0].index, rs[0].request_ctx.as_slice()),
        (commit, &b"r1"[..])
    );

    // Cut off, the leader cannot confirm the read.
    c.isolated
        .extend([1, 2, 3].into_iter().filter(|&id| id != leader));
    c.node(leader).driver().read_index(b"r2".to_vec()).unwrap();
    c.settle();
    assert_eq!(c.node(leader).read_states.len(), 1);
}

#[test]
fn leadership_can_be_transferred() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let leader = c.elect(100);
    let target = [1, 2, 3].into_iter().find(|&id| id != leader).unwrap();
    c.node(leader).driver().transfer_leader(target).unwrap();
    c.settle();
    assert_eq!(c.leader(), Some(target));
}

#[test]
fn config_errors_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            dwcp_acp::NodeConfig {
                id: 0,
                ..config(1, &[])
            },
            "id",
        ),
        (
            dwcp_acp::NodeConfig {
                election_tick: 2,
                ..config(1, &[])
            },
            "electionTick",
        ),
        (
            dwcp_acp::NodeConfig {
                heartbeat_tick: 0,
                ..config(1, &[])
            },
            "heartbeatTick",
        ),
        (config(1, &[2, 3]), "initialVoters"),
        (config(1, &[1, 1]), "initialVoters"),
        (
            dwcp_acp::NodeConfig {
                max_inflight_msgs: 0,
                ..config(1, &[])
            },
            "maxInflightMsgs",
        ),
    ];
    for (cfg, field) in cases {
        match RaftDriver::open(&cfg, dir.path()) {
            Err(dwcp_acp::AcpError::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    // A data directory belongs to one node id.
    drop(RaftDriver::open(&config(1, &[1]), dir.path()).unwrap());
    let err = RaftDriver::open(&config(2, &[2]), dir.path()).unwrap_err();
    assert!(
        matches!(err, dwcp_acp::AcpError::InvalidConfig { field: "id", .. }),
        "{err:?}"
    );
}
