/**
 * Three ACP runtimes in one process, each with its own data directory, real raft-rs storage and a
 * real mutual-TLS gRPC peer server on loopback. (The multi-process daemon tests are in test/cluster.)
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DomainError } from '@novacron/cluster-state';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { type AcpConfig, type AcpRuntime, DEFAULT_RAFT, startAcp } from './acp-node';

const dirs: string[] = [];
const live = new Set<AcpRuntime>();

afterEach(async () => {
  for (const r of live) await r.close().catch(() => undefined);
  live.clear();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

async function until<T>(what: string, f: () => T | undefined | false, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

interface Member {
  name: string;
  dir: string;
  port: number;
  rt: AcpRuntime;
}

async function start(name: string, seed?: Member, reuse?: Member): Promise<Member> {
  const dir = reuse?.dir ?? mkdtempSync(join(tmpdir(), `acp-${name}-`));
  if (!reuse) dirs.push(dir);
  const port = reuse?.port ?? (await freePort());
  const cfg: AcpConfig = {
    dataDir: dir,
    nodeName: name,
    clusterName: 'spec',
    peer: { host: '127.0.0.1', port },
    apiUrl: `http://127.0.0.1:1/${name}`,
    capacity: { vcpus: 8, memoryMiB: 8192 },
    raft: { ...DEFAULT_RAFT, minTickMs: 20, snapshotEvery: 50, requestTimeoutMs: 4000 },
    ...(seed ? { join: { url: 'http://seed.invalid', token: 'in-process' } } : {}),
  };
  const token = seed ? readFileSync(join(seed.dir, 'cluster', 'join.token'), 'utf8').trim() : '';
  // The seed admits the joiner directly; the HTTP hop of a join is covered by test/cluster.
  const rt = await startAcp(cfg, new Registry(), async (c, peerAddr) => {
    if (!seed) throw new Error('no seed');
    return seed.rt.admit(token, { nodeName: c.nodeName, peerAddr, apiUrl: c.apiUrl, capacity: c.capacity });
  });
  live.add(rt);
  return { name, dir, port, rt };
}

async function stop(m: Member): Promise<void> {
  live.delete(m.rt);
  await m.rt.close();
}

const leaderOf = (ms: Member[]) => ms.find((m) => live.has(m.rt) && m.rt.replica.isLeader);

async function createVm(m: Member, name: string): Promise<string> {
  const r = (await m.rt.store.execute({
    type: 'vm.create',
    vmId: `vm-${name}`,
    name,
    image: 'debian',
    vcpus: 1,
    memoryMiB: 64,
    labels: {},
    at: new Date().toISOString(),
  })) as { id: string };
  return r.id;
}

describe('ACP over real sockets', () => {
  it('bootstraps, admits two members, commits through any of them, survives the leader, and catches up a restarted node', async () => {
    const a = await start('alpha');
    await until('alpha registers itself', () => a.rt.replica.state.getNode('node-1'));
    const b = await start('bravo', a);
    const c = await start('charlie', a);
    const all = [a, b, c];
    await until('three voters everywhere', () => all.every((m) => m.rt.store.status().voters.length === 3));
    expect(a.rt.replica.state.listNodes().map((n) => n.name)).toEqual(['alpha', 'bravo', 'charlie']);

    // A write through a follower is forwarded to the leader; a linearizable read anywhere sees it.
    const follower = all.find((m) => !m.rt.replica.isLeader);
    if (!follower) throw new Error('no follower');
    const id = await createVm(follower, 'one');
    for (const m of all) expect(await m.rt.store.read((s) => s.getVm(id)?.name)).toBe('one');

    // A rejected command is committed but changes nothing, and the error is typed.
    await expect(createVm(follower, 'one')).rejects.toMatchObject({ code: 'ERR_CONFLICT' });

    // The leader stops; the others elect a new one and no acknowledged write is lost.
    const first = await until('a leader', () => leaderOf(all));
    await stop(first);
    const rest = all.filter((m) => m !== first);
    const second = await until('a new leader', () => leaderOf(rest));
    expect(second).not.toBe(first);
    for (let i = 0; i < 60; i++) await createVm(rest[i % 2] as Member, `w${i}`);
    expect(await second.rt.store.read((s) => s.listVms().length)).toBe(61);

    // The old leader restarts from its data dir and catches up (the log was compacted: snapshotEvery 50).
    const back = await start(first.name, undefined, first);
    await until('restarted node catches up', () => back.rt.replica.state.listVms().length === 61);
    expect(back.rt.replica.state.getVm(id)?.name).toBe('one');
  }, 90_000);

  it('a minority cannot commit, and the majority can', async () => {
    const a = await start('alpha');
    await until('alpha registers itself', () => a.rt.replica.state.getNode('node-1'));
    const b = await start('bravo', a);
    const c = await start('charlie', a);
    await until('three voters', () => [a, b, c].every((m) => m.rt.store.status().voters.length === 3));
    const leader = await until('a leader', () => leaderOf([a, b, c]));
    const others = [a, b, c].filter((m) => m !== leader);
    for (const o of others) await stop(o);
    // Alone, the old leader steps down (check-quorum) or cannot commit: either way the write fails.
    const err = await createVm(leader, 'lonely').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DomainError);
    expect(['ERR_TIMEOUT', 'ERR_UNAVAILABLE']).toContain((err as DomainError).code);
    // Bring one back: a majority again, and a write commits.
    const again = await start((others[0] as Member).name, undefined, others[0]);
    await until('a leader', () => leaderOf([leader, again]));
    const id = await createVm(again, 'majority');
    expect(await leader.rt.store.read((s) => s.getVm(id)?.name)).toBe('majority');
  }, 90_000);

  it('refuses a join with a wrong token', async () => {
    const a = await start('alpha');
    await until('alpha registers itself', () => a.rt.replica.state.getNode('node-1'));
    await expect(
      a.rt.admit('dwcp_join_wrong', {
        nodeName: 'x',
        peerAddr: '127.0.0.1:1',
        apiUrl: 'http://127.0.0.1:1',
        capacity: { vcpus: 1, memoryMiB: 1 },
      }),
    ).rejects.toMatchObject({ code: 'ERR_UNAUTHENTICATED' });
  });
});
