import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type {
  MigrationPhase,
  MigrationRecord,
  MigrationStats,
  NodeRecord,
  VmRecord,
} from '@novacron/cluster-state';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { EXIT } from './exit-codes';
import { runCli } from './main';
import { type RealNode, startRealNode } from './testing/real-node';
import { dwcp, recordingIo } from './testing/test-io';

describe('dwcp migrate against a real single-node cluster', () => {
  let node: RealNode;
  let api: string[];
  beforeAll(async () => {
    node = await startRealNode();
    api = ['--api', node.apiUrl, '--data-dir', node.dataDir];
  }, 60_000);
  afterAll(() => node?.close());

  it('exits 4 with the API message and field for a VM that is stopped', async () => {
    const vm = JSON.parse(
      (
        await dwcp([
          'vm',
          'create',
          '--name',
          'idle',
          '--image',
          'debian-12',
          '--vcpus',
          '1',
          '--memory-mib',
          '64',
          '--json',
          ...api,
        ])
      ).stdout,
    ) as VmRecord;
    const r = await dwcp(['migrate', 'idle', '--to', 'cli-test', ...api]);
    expect(r.code).toBe(EXIT.conflict);
    expect(r.stderr).toBe(
      `dwcp: ERR_CONFLICT: VM ${vm.id} is stopped; only a running VM is live-migrated (vmId)\n`,
    );
    expect(r.stdout).toBe('');
  });

  it('exits 3 for an unknown VM or target node, and 2 without --to', async () => {
    const vm = await dwcp(['migrate', 'ghost', '--to', 'node-1', ...api]);
    expect(vm).toMatchObject({
      code: EXIT.notFound,
      stderr: 'dwcp: ERR_NOT_FOUND: no VM has the id or name ghost\n',
    });
    const target = await dwcp(['migrate', 'idle', '--to', 'nowhere', ...api]);
    expect(target).toMatchObject({
      code: EXIT.notFound,
      stderr: 'dwcp: ERR_NOT_FOUND: no node has the id or name nowhere\n',
    });
    const noTarget = await dwcp(['migrate', 'idle', ...api]);
    expect(noTarget.code).toBe(EXIT.usage);
    expect(noTarget.stderr).toContain("required option '--to <node>' not specified");
  });

  it('exits 3 when cancelling or getting a migration that does not exist', async () => {
    const cancel = await dwcp(['migrate', 'cancel', 'mig-nothere', '--reason', 'test', ...api]);
    expect(cancel).toMatchObject({
      code: EXIT.notFound,
      stderr: 'dwcp: ERR_NOT_FOUND: migration mig-nothere not found\n',
    });
    expect((await dwcp(['migrate', 'get', 'mig-nothere', ...api])).code).toBe(EXIT.notFound);
  });

  it('lists no migrations, with the connection flags before or after the subcommand', async () => {
    expect(await dwcp(['migrate', 'list', ...api])).toMatchObject({ code: 0, stdout: 'no migrations\n' });
    expect(await dwcp(['migrate', ...api, 'list', '--json'])).toMatchObject({ code: 0, stdout: '[]\n' });
  });
});

// A scripted stand-in for the API, because nodes do not run migrations yet: these tests cover the CLI's
// polling, display, Ctrl-C and exit codes only, not a migration.
const at = '2025-01-01T00:00:00.000Z';
const VM: VmRecord = {
  id: 'vm-s1',
  name: 'web-1',
  image: 'debian',
  vcpus: 1,
  memoryMiB: 64,
  nodeId: 'node-1',
  state: 'running',
  labels: {},
  createdAt: at,
  revision: 1,
};
const NODES = ['node-1', 'node-2'].map(
  (id, i): NodeRecord => ({
    id,
    raftId: i + 1,
    name: `host-${i + 1}`,
    apiUrl: 'http://127.0.0.1:1',
    peerAddr: '127.0.0.1:1',
    status: 'ready',
    capacity: { vcpus: 4, memoryMiB: 4096 },
    labels: {},
    joinedAt: at,
    revision: 1,
  }),
);

let revision = 10;
function mig(phase: MigrationPhase, stats: MigrationStats = {}, reason?: string): MigrationRecord {
  revision += 1;
  return {
    id: 'mig-s1',
    vmId: VM.id,
    sourceNodeId: 'node-1',
    targetNodeId: 'node-2',
    phase,
    stats,
    createdAt: at,
    updatedAt: '2025-01-01T00:00:09.000Z',
    revision,
    ...(reason !== undefined ? { reason } : {}),
  };
}

const GB = 1e9;
const live = (remaining: number): MigrationStats => ({
  ramBytes: 4 * GB,
  remainingBytes: remaining,
  wireBytesPerSec: 100e6,
  dirtyRateBytesPerSec: 20e6,
  dedupRatio: 0.25,
  etaMs: 9000,
});
const FINAL: MigrationStats = {
  ramBytes: 4 * GB,
  remainingBytes: 0,
  bytesIn: 4 * GB,
  bytesOnWire: 1 * GB,
  dedupRatio: 0.5,
  compressionRatio: 2,
  downtimeMs: 80,
  totalMs: 9000,
};

interface Scripted {
  url: string;
  /** `METHOD path` of every request, with the body of POSTs. */
  seen: string[];
  close(): Promise<void>;
}

/**
 * Answers the reads `dwcp migrate` makes; GET /v1/migrations/mig-s1 walks through `polls` (a number
 * there is an error status) and then repeats the last one; a cancel switches to `afterCancel`.
 */
async function scriptedApi(
  polls: (MigrationRecord | number)[],
  afterCancel?: MigrationRecord,
): Promise<Scripted> {
  const seen: string[] = [];
  let next = 0;
  let cancelled = false;
  const send = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.on('data', (c: Buffer) => {
      body += c.toString();
    });
    req.on('end', () => {
      seen.push(`${req.method} ${req.url}${body ? ` ${body}` : ''}`);
      const path = (req.url ?? '').split('?')[0];
      if (req.method === 'GET' && path === `/v1/vms/${VM.id}`) return send(res, 200, VM);
      if (req.method === 'GET' && path === '/v1/vms') return send(res, 200, { items: [VM] });
      if (req.method === 'GET' && path === '/v1/nodes') return send(res, 200, { items: NODES });
      // Older than every scripted record: the CLI ignores a read older than what it has seen.
      if (req.method === 'POST' && path === '/v1/migrations')
        return send(res, 201, { ...mig('pending'), revision: 1 });
      if (req.method === 'POST' && path === '/v1/migrations/mig-s1/cancel' && afterCancel) {
        cancelled = true;
        return send(res, 200, afterCancel);
      }
      if (req.method === 'GET' && path === '/v1/migrations/mig-s1') {
        if (cancelled && afterCancel) return send(res, 200, afterCancel);
        const step = polls[Math.min(next, polls.length - 1)];
        next += 1;
        if (typeof step === 'number')
          return send(res, step, { code: 'ERR_UNAVAILABLE', message: 'no leader' });
        return send(res, 200, step);
      }
      send(res, 404, { code: 'ERR_NOT_FOUND', message: `no such route: ${req.method} ${path}` });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

describe('dwcp migrate following a scripted API (the CLI polling loop and exit codes only, no real migration)', () => {
  let api: Scripted | undefined;
  afterEach(async () => {
    await api?.close();
    api = undefined;
  });
  const flags = () => ['--api', api?.url ?? '', '--token', 't'];

  it('prints one line per change without escape codes when stdout is not a terminal, then a summary; exit 0', async () => {
    api = await scriptedApi([
      mig('preparing'),
      mig('transferring', live(2.8 * GB)),
      mig('transferring', live(2.8 * GB)),
      mig('transferring', live(1.2 * GB)),
      mig('transferring', live(2.0 * GB)),
      mig('switching-over', live(0.1 * GB)),
      mig('done', FINAL),
    ]);
    const r = await dwcp(['migrate', 'web-1', '--to', 'host-2', ...flags()]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).not.toContain('\r');
    expect(r.stdout).not.toContain('\u001b');
    const out = r.stdout.trimEnd().split('\n');
    expect(out[0]).toBe('migrating VM web-1 (vm-s1) from node-1 to node-2: mig-s1');
    const progress = out.slice(1, out.indexOf('migration mig-s1 of vm-s1: node-1 -> node-2'));
    // pending, preparing, 30%, (30% again is not a change), 70%, 50% (re-sent), switching-over, done.
    expect(progress.map((l) => l.split(/\s+/)[0])).toEqual([
      'pending',
      'preparing',
      'transferring',
      'transferring',
      'transferring',
      'switching-over',
      'done',
    ]);
    expect(progress[4]).toContain('re-sending dirtied pages (best 70.0%)');
    expect(out.slice(-8)).toEqual([
      '  result:            done',
      '  total time:        9.0 s',
      '  bytes from QEMU:   4.00 GB',
      '  bytes on the wire: 1.00 GB',
      '  reduction:         4.00x',
      '  dedup:             50.0% of the bytes from QEMU',
      '  compression:       2.00x',
      '  downtime:          80 ms',
    ]);
    expect(api.seen).toContain('POST /v1/migrations {"vmId":"vm-s1","targetNodeId":"node-2"}');
    const polls = api.seen.filter((s) => s.startsWith('GET /v1/migrations/mig-s1'));
    expect(polls[0]).toBe('GET /v1/migrations/mig-s1?consistency=linearizable');
    expect(polls[1]).toBe('GET /v1/migrations/mig-s1?consistency=local');
  });

  it('redraws one line with \\r on a terminal, cut to its width', async () => {
    api = await scriptedApi([mig('transferring', live(2 * GB)), mig('done', FINAL)]);
    const r = await dwcp(['migrate', 'vm-s1', '--to', 'node-2', ...flags()], { isTTY: true, columns: 40 });
    expect(r.code).toBe(0);
    const drawn = r.stdout.split('\n')[1] ?? '';
    const frames = drawn.split('\r').slice(1);
    expect(frames.map((f) => f.trimEnd().split(/\s+/)[0])).toEqual(['pending', 'transferring', 'done']);
    for (const f of frames) expect(f.length).toBeLessThanOrEqual(39);
    expect(r.stdout.split('\n')[2]).toBe('migration mig-s1 of vm-s1: node-1 -> node-2');
  });

  it('exits 7 with the reason when the migration fails', async () => {
    api = await scriptedApi([
      mig('transferring', live(3 * GB)),
      mig('failed', { bytesIn: 1 * GB }, 'destination QEMU exited'),
    ]);
    const r = await dwcp(['migrate', 'web-1', '--to', 'node-2', ...flags()]);
    expect(r.code).toBe(EXIT.migrationFailed);
    expect(r.stdout).toContain('  reason:            destination QEMU exited\n');
    expect(r.stderr).toBe('dwcp: ERR_MIGRATION_FAILED: migration mig-s1 failed: destination QEMU exited\n');
  });

  it('on Ctrl-C asks the cluster to cancel, keeps following, and exits 8', async () => {
    api = await scriptedApi(
      [mig('transferring', live(3 * GB))],
      mig('cancelled', {}, 'cancelled by the operator'),
    );
    const rec = recordingIo();
    const run = runCli(['migrate', 'web-1', '--to', 'node-2', ...flags()], rec.io);
    const scripted = api;
    await until(() => scripted.seen.filter((s) => s.startsWith('GET /v1/migrations/mig-s1')).length >= 2);
    rec.interrupt();
    expect(await run).toBe(EXIT.migrationCancelled);
    expect(api.seen).toContain(
      'POST /v1/migrations/mig-s1/cancel {"reason":"cancelled by the operator (Ctrl-C in dwcp migrate)"}',
    );
    expect(rec.stderr()).toBe(
      'dwcp: cancelling migration mig-s1 (Ctrl-C again to stop following)\n' +
        'dwcp: ERR_MIGRATION_CANCELLED: migration mig-s1 was cancelled: cancelled by the operator\n',
    );
    expect(rec.stdout()).toContain('  result:            cancelled\n');
  });

  it('stops following on a second Ctrl-C with exit 130, the migration left to the cluster', async () => {
    api = await scriptedApi([mig('transferring', live(3 * GB))]);
    const rec = recordingIo();
    const run = runCli(['migrate', 'web-1', '--to', 'node-2', ...flags()], rec.io);
    const scripted = api;
    await until(() => scripted.seen.some((s) => s.startsWith('GET /v1/migrations/mig-s1')));
    rec.interrupt();
    rec.interrupt();
    expect(await run).toBe(EXIT.interrupted);
    expect(rec.stderr()).toContain('stopped following migration mig-s1; it goes on in the cluster');
  });

  it('rides out a 503 while following', async () => {
    api = await scriptedApi([mig('transferring', live(3 * GB)), 503, mig('done', FINAL)]);
    const r = await dwcp(['migrate', 'web-1', '--to', 'node-2', ...flags()]);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('dwcp: ERR_UNAVAILABLE: no leader\ndwcp: retrying\n');
  });

  it('with --no-wait prints the migration id and returns', async () => {
    api = await scriptedApi([mig('transferring', live(3 * GB))]);
    const r = await dwcp(['migrate', 'web-1', '--to', 'node-2', '--no-wait', ...flags()]);
    expect(r).toMatchObject({ code: 0, stdout: 'mig-s1\n', stderr: '' });
    expect(api.seen.some((s) => s.startsWith('GET /v1/migrations/'))).toBe(false);
  });

  it('sends the convergence policy the operator set, and only that', async () => {
    api = await scriptedApi([mig('transferring', live(3 * GB))]);
    const r = await dwcp([
      'migrate',
      'web-1',
      '--to',
      'node-2',
      '--no-auto-converge',
      '--completion-timeout-per-gib',
      '30',
      '--no-wait',
      ...flags(),
    ]);
    expect(r.code).toBe(0);
    expect(api.seen).toContain(
      'POST /v1/migrations {"vmId":"vm-s1","targetNodeId":"node-2","policy":{"autoConverge":false,"completionTimeoutPerGiBSec":30}}',
    );
    const bad = await dwcp([
      'migrate',
      'web-1',
      '--to',
      'node-2',
      '--completion-timeout-per-gib',
      '0',
      ...flags(),
    ]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--completion-timeout-per-gib');
  });

  it('with --json prints one JSON record per change', async () => {
    api = await scriptedApi([mig('transferring', live(3 * GB)), mig('done', FINAL)]);
    const r = await dwcp(['migrate', 'web-1', '--to', 'node-2', '--json', ...flags()]);
    expect(r.code).toBe(0);
    const records = r.stdout
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as MigrationRecord);
    expect(records.map((m) => m.phase)).toEqual(['pending', 'transferring', 'done']);
  });
});

async function until(check: () => boolean): Promise<void> {
  const end = Date.now() + 10_000;
  while (!check()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 2));
  }
}
