import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { NativeError, type RaftMessage, RaftNode, type RaftNodeConfig } from './index';

/** The caller side of one node: the driver plus a toy state machine (applied payloads). */
interface Member {
  config: RaftNodeConfig;
  node: RaftNode | undefined;
  state: string[];
  applied: number;
}

/** Three (or more) RaftNodes in one process, routed by `to`, on a virtual clock of ticks. */
class Net {
  readonly members = new Map<number, Member>();
  readonly isolated = new Set<number>();
  private readonly queue: Array<{ from: number; msg: RaftMessage }> = [];

  constructor(readonly root: string) {}

  add(id: number, initialVoters?: number[]): void {
    const config: RaftNodeConfig = {
      id,
      dataDir: join(this.root, `node-${id}`),
      electionTick: 10,
      heartbeatTick: 2,
    };
    if (initialVoters) config.initialVoters = initialVoters;
    this.members.set(id, { config, node: RaftNode.open(config), state: [], applied: 0 });
  }

  member(id: number): Member {
    const m = this.members.get(id);
    if (!m) throw new Error(`no node ${id}`);
    return m;
  }

  node(id: number): RaftNode {
    const n = this.member(id).node;
    if (!n) throw new Error(`node ${id} is closed`);
    return n;
  }

  /** Close drops the in-memory state machine too, as a process restart would. */
  close(id: number): void {
    const m = this.member(id);
    m.node?.close();
    m.node = undefined;
    m.state = [];
    m.applied = 0;
  }

  reopen(id: number): void {
    const m = this.member(id);
    m.node = RaftNode.open(m.config);
  }

  settle(): void {
    for (let round = 0; round < 10_000; round++) {
      let busy = false;
      for (const [id, m] of this.members) {
        const node = m.node;
        while (node?.hasReady()) {
          busy = true;
          const rd = node.ready();
          if (rd.snapshot) {
            m.state = rd.snapshot.data.length ? (JSON.parse(rd.snapshot.data.toString()) as string[]) : [];
            m.applied = rd.snapshot.index;
          }
          for (const e of rd.committedEntries) {
            expect(e.index).toBe(m.applied + 1);
            m.applied = e.index;
            if (e.kind === 'normal') {
              if (e.data.length) m.state.push(e.data.toString());
            } else {
              node.applyConfChange(e);
            }
          }
          for (const msg of rd.messages) this.queue.push({ from: id, msg });
          if (rd.snapshotRequested) node.compact(m.applied, Buffer.from(JSON.stringify(m.state)));
        }
      }
      for (let q = this.queue.shift(); q; q = this.queue.shift()) {
        busy = true;
        if (this.isolated.has(q.from) || this.isolated.has(q.msg.to)) continue;
        try {
          this.members.get(q.msg.to)?.node?.step(q.msg.bytes);
        } catch (e) {
          // A response from a peer not (yet) in the receiver's configuration: documented as safe to drop.
          if (!(e instanceof NativeError && e.code === 'ERR_ACP_UNKNOWN_PEER')) throw e;
        }
      }
      if (!busy) return;
    }
    throw new Error('the cluster did not settle');
  }

  tick(n: number): void {
    for (let i = 0; i < n; i++) {
      for (const m of this.members.values()) m.node?.tick();
      this.settle();
    }
  }

  leader(): number | undefined {
    const leaders = [...this.members.entries()]
      .filter(([id, m]) => m.node && !this.isolated.has(id) && m.node.status().role === 'leader')
      .map(([id]) => id);
    return leaders.length === 1 ? leaders[0] : undefined;
  }

  elect(maxTicks = 100): number {
    for (let i = 0; i < maxTicks; i++) {
      const l = this.leader();
      if (l !== undefined) return l;
      this.tick(1);
    }
    throw new Error(`no leader after ${maxTicks} ticks`);
  }

  propose(id: number, text: string): number {
    const index = this.node(id).propose(Buffer.from(text));
    this.settle();
    return index;
  }
}

const roots: string[] = [];
function cluster(ids: number[]): Net {
  const root = mkdtempSync(join(tmpdir(), 'dwcp-acp-'));
  roots.push(root);
  const net = new Net(root);
  for (const id of ids) net.add(id, ids);
  return net;
}

afterEach(() => {
  for (const r of roots.splice(0)) rmSync(r, { recursive: true, force: true });
});

function codeOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(NativeError);
    return (e as NativeError).code;
  }
  return undefined;
}

describe('RaftNode', () => {
  it('elects a leader among three nodes and commits entries on all of them', () => {
    const net = cluster([1, 2, 3]);
    const leader = net.elect();
    const first = net.propose(leader, 'a');
    expect(net.propose(leader, 'b')).toBe(first + 1);
    for (const id of [1, 2, 3]) {
      expect(net.member(id).state).toEqual(['a', 'b']);
      const s = net.node(id).status();
      expect(s).toMatchObject({
        id,
        leaderId: leader,
        commit: first + 1,
        applied: first + 1,
        voters: [1, 2, 3],
      });
      expect(s.role).toBe(id === leader ? 'leader' : 'follower');
    }
  });

  it('restarts a follower from its data dir and catches it up, from the log and from a snapshot', () => {
    const net = cluster([1, 2, 3]);
    const leader = net.elect();
    net.propose(leader, 'one');
    const follower = [1, 2, 3].find((id) => id !== leader) as number;

    net.close(follower);
    net.propose(leader, 'two');
    net.reopen(follower);
    net.tick(3);
    expect(net.member(follower).state).toEqual(['one', 'two']);

    net.close(follower);
    for (let i = 0; i < 5; i++) net.propose(leader, `e${i}`);
    for (const id of [1, 2, 3].filter((i) => i !== follower)) {
      const m = net.member(id);
      expect(net.node(id).compact(m.applied, Buffer.from(JSON.stringify(m.state)))).toBe(true);
      expect(net.node(id).status().firstIndex).toBe(m.applied + 1);
    }
    net.reopen(follower);
    net.tick(3);
    expect(net.member(follower).state).toEqual(['one', 'two', 'e0', 'e1', 'e2', 'e3', 'e4']);
    expect(net.node(follower).status().applied).toBe(net.node(leader).status().applied);
  });

  it('adds a fourth node by conf change', () => {
    const net = cluster([1, 2, 3]);
    const leader = net.elect();
    net.propose(leader, 'x');
    net.add(4);
    net.node(leader).proposeConfChange({ kind: 'addNode', nodeId: 4 });
    net.tick(10);
    expect(net.node(4).status().voters).toEqual([1, 2, 3, 4]);
    net.propose(leader, 'y');
    expect(net.member(4).state).toEqual(['x', 'y']);
  });

  it('gives typed errors: bad bytes, not leader, bad ids, closed', () => {
    const net = cluster([1, 2, 3]);
    const leader = net.elect();
    const follower = [1, 2, 3].find((id) => id !== leader) as number;
    expect(codeOf(() => net.node(1).step(Buffer.from('not a raft message at all')))).toBe(
      'ERR_ACP_BAD_MESSAGE',
    );
    expect(codeOf(() => net.node(1).step(new Uint8Array([0xff, 0xff, 0xff])))).toBe('ERR_ACP_BAD_MESSAGE');
    expect(codeOf(() => net.node(follower).propose(Buffer.from('x')))).toBe('ERR_ACP_NOT_LEADER');
    expect(codeOf(() => net.node(leader).transferLeader(2 ** 53))).toBe('ERR_ACP_INVALID_CONFIG');
    const dir = join(net.root, 'bad');
    expect(
      codeOf(() => RaftNode.open({ id: 2 ** 53, dataDir: dir, electionTick: 10, heartbeatTick: 2 })),
    ).toBe('ERR_ACP_INVALID_CONFIG');
    expect(codeOf(() => RaftNode.open({ id: 9, dataDir: dir, electionTick: 2, heartbeatTick: 2 }))).toBe(
      'ERR_ACP_INVALID_CONFIG',
    );
    expect(() => RaftNode.open({ id: 9, dataDir: dir, electionTick: 2, heartbeatTick: 2 })).toThrow(
      /electionTick/,
    );
    const node = net.node(leader);
    net.close(leader);
    expect(codeOf(() => node.status())).toBe('ERR_ACP_CLOSED');
  });

  it('bootstraps a single-node cluster', () => {
    const net = cluster([1]);
    net.node(1).campaign();
    net.settle();
    expect(net.leader()).toBe(1);
    net.propose(1, 'solo');
    expect(net.member(1).state).toEqual(['solo']);
  });
});
