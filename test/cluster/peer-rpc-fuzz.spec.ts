/**
 * The peer port under hostile input. Every node-to-node RPC (RaftPeer: Deliver, Propose,
 * ChangeMembership; IncomingMigration: Prepare, Await, Abort) gets malformed, oversized and
 * out-of-order requests on three real node processes, with certificates from the cluster CA and
 * without one. Each call must end before its deadline with a stable gRPC status, and after each
 * batch every node must still serve: same pid, ready, a write commits and a linearizable read
 * agrees on every node. Random inputs come from a seeded generator (DWCP_FUZZ_SEED, printed).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { MigrationRecord } from '@novacron/cluster-state';
import { generateClusterCa, issueNodeCertificate } from '@novacron/native';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ClusterStatusBody, LocalCluster, type NodeProcess, until } from './harness';

const SEED = Number(process.env.DWCP_FUZZ_SEED ?? 0x5eed2026) >>> 0;
const DEADLINE_MS = 5000;
/** PeerTransport's grpc.max_receive_message_length (grpc-js's own default is 4 MiB). */
const MAX_RECEIVE = 64 << 20;
const { status } = grpc;

/** mulberry32: small, seedable, good enough to pick bytes. */
function prng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const random = prng(SEED);
const randomBytes = (max: number): Buffer =>
  Buffer.from(Array.from({ length: 1 + Math.floor(random() * max) }, () => Math.floor(random() * 256)));

// ---- protobuf, written by hand so that requests can also be wrong

function varint(value: bigint | number): Buffer {
  let v = BigInt.asUintN(64, BigInt(value));
  const out: number[] = [];
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v !== 0n) b |= 0x80;
    out.push(b);
  } while (v !== 0n);
  return Buffer.from(out);
}
const tag = (field: number, wire: number) => varint((field << 3) | wire);
/** One field with any wire type and payload, for requests whose types are wrong. */
const rawField = (field: number, wire: number, payload: Buffer) => Buffer.concat([tag(field, wire), payload]);
type Value = bigint | number | string | Buffer;
/** A message: a number is a varint, a string or Buffer is length-delimited. */
function pb(...fields: [number, Value][]): Buffer {
  return Buffer.concat(
    fields.flatMap(([field, v]) => {
      if (typeof v === 'number' || typeof v === 'bigint') return [tag(field, 0), varint(v)];
      const b = Buffer.from(v);
      return [tag(field, 2), varint(b.length), b];
    }),
  );
}

/** eraftpb.MessageType values (raft-rs). */
const MSG = {
  hup: 0,
  beat: 1,
  append: 3,
  appendResponse: 4,
  requestVote: 5,
  snapshot: 7,
  heartbeat: 8,
  unreachable: 10,
  snapStatus: 11,
  checkQuorum: 12,
  requestPreVote: 17,
} as const;

interface RaftFields {
  type: number;
  to: number | bigint;
  from: number | bigint;
  term?: number | bigint;
  logTerm?: number;
  index?: number | bigint;
  commit?: number;
  reject?: boolean;
}
/** An eraftpb.Message. */
function raftMessage(m: RaftFields): Buffer {
  const f: [number, Value][] = [
    [1, m.type],
    [2, m.to],
    [3, m.from],
  ];
  if (m.term !== undefined) f.push([4, m.term]);
  if (m.logTerm !== undefined) f.push([5, m.logTerm]);
  if (m.index !== undefined) f.push([6, m.index]);
  if (m.commit !== undefined) f.push([8, m.commit]);
  if (m.reject) f.push([10, 1]);
  return pb(...f);
}
const raftBatch = (from: number | bigint, messages: Buffer[]) =>
  pb([1, from], ...messages.map((m): [number, Value] => [2, m]));
const proposeRequest = (command: string | Buffer) => pb([1, command]);
const KIND = { add: 0, remove: 1 } as const;
const membershipChange = (kind: number, raftId: number | bigint, context: string | Buffer = '{}') =>
  pb([1, kind], [2, raftId], [3, context]);
const migrationRequest = (id: string | Buffer, reason?: string) =>
  reason === undefined ? pb([1, id]) : pb([1, id], [2, reason]);

const METHODS = {
  deliver: '/dwcp.cluster.v1.RaftPeer/Deliver',
  propose: '/dwcp.cluster.v1.RaftPeer/Propose',
  changeMembership: '/dwcp.cluster.v1.RaftPeer/ChangeMembership',
  prepare: '/dwcp.migration.v1.IncomingMigration/Prepare',
  await: '/dwcp.migration.v1.IncomingMigration/Await',
  abort: '/dwcp.migration.v1.IncomingMigration/Abort',
} as const;
type Method = keyof typeof METHODS;
const ALL_METHODS = Object.keys(METHODS) as Method[];
const MIGRATION_METHODS: Method[] = ['prepare', 'await', 'abort'];

/** The same field with the wrong wire type, an invalid wire type, and a length that runs past the end. */
function wrongTypes(field: number, declared: 'varint' | 'bytes'): Buffer[] {
  const other =
    declared === 'varint'
      ? rawField(field, 2, Buffer.from([3, 0x61, 0x62, 0x63]))
      : rawField(field, 0, varint(5));
  return [
    other,
    rawField(field, 1, Buffer.alloc(8, 0xff)),
    rawField(field, 5, Buffer.alloc(4, 0xff)),
    rawField(field, 7, Buffer.from([1, 2, 3])),
    rawField(field, 3, Buffer.alloc(0)),
    Buffer.concat([tag(field, 2), varint(1000), Buffer.from('short')]),
    Buffer.from([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]),
  ];
}

// ---- the cluster and its callers

const cluster = new LocalCluster([
  '--raft-min-tick-ms',
  '20',
  '--hypervisor-driver',
  'simulated',
  '--migration-orphan-timeout-ms',
  '3000',
]);

interface Caller {
  label: string;
  caPem: string;
  certPem?: string;
  keyPem?: string;
}

const pids = new Map<string, number | undefined>();
const raftIdOf = new Map<string, number>();
const nodeIdOf = new Map<string, string>();
const clients = new Map<string, grpc.Client>();
let caPem = '';
let ca: { certPem: string; keyPem: string };
const memberCallers = new Map<string, Caller>();
let mallory: Caller;
let foreign: Caller;
let anonymous: Caller;
let nodes: NodeProcess[] = [];
const startedAt = performance.now();

/** A certificate from the cluster CA naming `nodeName`: what a member (or a removed one) holds. */
function issued(nodeName: string): Caller {
  return { label: `ca:${nodeName}`, caPem, ...issueNodeCertificate(ca, { nodeName }) };
}
/** The member a call to `n` claims to come from: the next node, so never `n` itself. */
function peerOf(n: NodeProcess): NodeProcess {
  return nodes[(nodes.indexOf(n) + 1) % nodes.length] as NodeProcess;
}
const callerFor = (n: NodeProcess) => memberCallers.get(peerOf(n).name) as Caller;
const raftId = (n: NodeProcess) => raftIdOf.get(n.name) as number;

function client(n: NodeProcess, caller: Caller, gzip: boolean): grpc.Client {
  const key = `${n.name}/${caller.label}/${gzip}`;
  let c = clients.get(key);
  if (!c) {
    c = new grpc.Client(
      `127.0.0.1:${n.peerPort}`,
      grpc.credentials.createSsl(
        Buffer.from(caller.caPem),
        caller.keyPem ? Buffer.from(caller.keyPem) : null,
        caller.certPem ? Buffer.from(caller.certPem) : null,
      ),
      {
        'grpc.ssl_target_name_override': n.name,
        'grpc.default_authority': n.name,
        ...(gzip ? { 'grpc.default_compression_algorithm': grpc.compressionAlgorithms.gzip } : {}),
      },
    );
    clients.set(key, c);
  }
  return c;
}

interface Outcome {
  code: grpc.status;
  details: string;
  ms: number;
  response?: Buffer;
}

/** One unary call with raw request bytes; resolves with its status, never throws. */
function call(
  n: NodeProcess,
  caller: Caller,
  method: Method,
  body: Buffer,
  opts: { timeoutMs?: number; gzip?: boolean } = {},
): Promise<Outcome> {
  const started = performance.now();
  const identity = (b: Buffer) => b;
  return new Promise((resolve) =>
    client(n, caller, opts.gzip ?? false).makeUnaryRequest(
      METHODS[method],
      identity,
      identity,
      body,
      new grpc.Metadata(),
      { deadline: Date.now() + (opts.timeoutMs ?? DEADLINE_MS) },
      (err, value) =>
        resolve({
          code: err ? err.code : status.OK,
          details: err ? err.details : '',
          ms: performance.now() - started,
          ...(value ? { response: value } : {}),
        }),
    ),
  );
}

type Kind = 'malformed' | 'oversized' | 'out-of-order' | 'unauthenticated';
/** `kind method CODE` → calls, printed at the end. */
const tally = new Map<string, number>();
/** Every call whose answer was not one of those expected, reported per batch. */
let problems: string[] = [];

interface Expectation {
  kind: Kind;
  method: Method;
  what: string;
  body: Buffer;
  expect: grpc.status[];
  caller?: Caller;
  timeoutMs?: number;
  gzip?: boolean;
}

async function expectStatus(n: NodeProcess, e: Expectation): Promise<Outcome> {
  const caller = e.caller ?? callerFor(n);
  const timeoutMs = e.timeoutMs ?? DEADLINE_MS;
  const o = await call(n, caller, e.method, e.body, { timeoutMs, ...(e.gzip ? { gzip: true } : {}) });
  const key = `${e.kind.padEnd(15)} ${e.method.padEnd(17)} ${status[o.code]}`;
  tally.set(key, (tally.get(key) ?? 0) + 1);
  const where = `${e.method} to ${n.name} as ${caller.label}: ${e.what}`;
  if (!e.expect.includes(o.code)) {
    problems.push(
      `${where}: ${status[o.code]} ${o.details.slice(0, 160)} (expected ${e.expect.map((c) => status[c]).join('|')})`,
    );
  }
  if (o.ms > timeoutMs + 1000) problems.push(`${where}: answered after ${Math.round(o.ms)} ms`);
  return o;
}

/** Runs the calls a few at a time (2 cores), each against its own expectation. */
async function batch(list: [NodeProcess, Expectation][]): Promise<void> {
  const queue = [...list];
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      for (let next = queue.shift(); next; next = queue.shift()) await expectStatus(...next);
    }),
  );
}

let writes = 0;

/** Every node kept its process, is ready, a write commits, and linearizable reads agree. */
async function stillServing(after: string): Promise<void> {
  const reported = problems;
  problems = [];
  for (const n of nodes) {
    expect(n.running, `${n.name} is running after ${after}\n${n.log.slice(-2000)}`).toBe(true);
    expect(n.proc?.pid, `${n.name} kept its process`).toBe(pids.get(n.name));
  }
  await until(
    `every node ready after ${after}`,
    async () => {
      const codes = await Promise.all(
        nodes.map((n) =>
          fetch(`${n.apiUrl}/health/ready`, { signal: AbortSignal.timeout(2000) }).then((r) => r.status),
        ),
      );
      return codes.every((c) => c === 200);
    },
    20_000,
  );
  const via = nodes[writes % nodes.length] as NodeProcess;
  const name = await until(
    `a write through ${via.name} after ${after}`,
    async () => {
      const attempt = `after-${after.replace(/[^a-z0-9]+/g, '-')}-${writes++}`;
      return (await cluster.createVm(via, attempt)).status === 201 ? attempt : undefined;
    },
    20_000,
  );
  const lists = await Promise.all(nodes.map((n) => cluster.readVmNames(n, 20_000)));
  for (const [i, list] of lists.entries()) expect(list, `${nodes[i]?.name} reads the write`).toContain(name);
  expect(new Set(lists.map((l) => JSON.stringify(l))).size, 'every node reads the same VMs').toBe(1);
  expect(reported, `calls answered other than expected in ${after}`).toEqual([]);
}

beforeAll(async () => {
  console.info(`peer-rpc-fuzz: DWCP_FUZZ_SEED=${SEED}`);
  await cluster.start(3);
  nodes = cluster.nodes;
  for (const n of nodes) {
    const s = (await cluster.statusOf(n)) as ClusterStatusBody;
    raftIdOf.set(n.name, s.raftId);
    nodeIdOf.set(n.name, s.nodeId);
    pids.set(n.name, n.proc?.pid);
  }
  const seed = nodes[0] as NodeProcess;
  caPem = cluster.clusterFile(seed, 'ca.pem');
  ca = { certPem: caPem, keyPem: cluster.clusterFile(seed, 'ca.key') };
  for (const n of nodes) memberCallers.set(n.name, issued(n.name));
  mallory = issued('mallory');
  foreign = {
    label: 'foreign-ca',
    caPem,
    ...issueNodeCertificate(generateClusterCa('intruders'), { nodeName: 'n2' }),
  };
  anonymous = { label: 'no-certificate', caPem };
}, 120_000);

afterAll(async () => {
  for (const c of clients.values()) c.close();
  const lines = [...tally.entries()].sort(([a], [b]) => a.localeCompare(b));
  const total = lines.reduce((s, [, c]) => s + c, 0);
  console.info(
    [
      `peer-rpc-fuzz: DWCP_FUZZ_SEED=${SEED}, ${total} calls in ${Math.round((performance.now() - startedAt) / 1000)} s`,
      ...lines.map(([k, c]) => `  ${k} ${c}`),
    ].join('\n'),
  );
  await cluster.stop();
});

describe('the peer port refuses bad requests and keeps serving', () => {
  it('malformed requests: undecodable bytes, wrong field types, payloads that are not what they claim', async () => {
    const list: [NodeProcess, Expectation][] = [];
    const add = (n: NodeProcess, e: Omit<Expectation, 'kind'>) => list.push([n, { kind: 'malformed', ...e }]);
    const INVALID = [status.INVALID_ARGUMENT];
    for (const n of nodes) {
      const from = raftId(peerOf(n));
      const other = raftId(nodes.find((x) => x !== n && x !== peerOf(n)) as NodeProcess);
      // Random bytes and wrong wire types, to every method. A request that happens to decode is
      // then judged on its content: no sender, no command, no such migration.
      for (const method of ALL_METHODS) {
        // One that decodes: Deliver from an unknown id is PERMISSION_DENIED, and a membership
        // change for an id no node registered is FAILED_PRECONDITION.
        const fallback = MIGRATION_METHODS.includes(method)
          ? [status.NOT_FOUND]
          : [status.PERMISSION_DENIED, status.FAILED_PRECONDITION];
        for (let i = 0; i < 6; i++) {
          add(n, {
            method,
            what: `random bytes #${i}`,
            body: randomBytes(200),
            expect: [...INVALID, ...fallback],
          });
        }
        const fields: [number, 'varint' | 'bytes'][] =
          method === 'deliver'
            ? [
                [1, 'varint'],
                [2, 'bytes'],
              ]
            : method === 'changeMembership'
              ? [
                  [1, 'varint'],
                  [2, 'varint'],
                  [3, 'bytes'],
                ]
              : [[1, 'bytes']];
        for (const [field, declared] of fields) {
          for (const [i, body] of wrongTypes(field, declared).entries()) {
            add(n, {
              method,
              what: `field ${field} wrong type #${i}`,
              body,
              expect: [...INVALID, ...fallback],
            });
          }
        }
      }
      // Deliver: a batch from the caller's own Raft id whose payloads are not Raft messages for this node.
      const heartbeat = (m: Partial<RaftFields>) =>
        raftMessage({ type: MSG.heartbeat, to: raftId(n), from, term: 1, ...m });
      const deliver = (what: string, body: Buffer, expect = INVALID) =>
        add(n, { method: 'deliver', what, body, expect });
      for (let i = 0; i < 4; i++)
        deliver(`a payload of random bytes #${i}`, raftBatch(from, [randomBytes(300)]));
      deliver('an empty payload', raftBatch(from, [Buffer.alloc(0)]));
      deliver('a message to another node', raftBatch(from, [heartbeat({ to: other })]));
      deliver('a message to node 0', raftBatch(from, [heartbeat({ to: 0 })]));
      deliver('a message to node 2^64-1', raftBatch(from, [heartbeat({ to: 2n ** 64n - 1n })]));
      for (const [type, v] of Object.entries({
        hup: MSG.hup,
        beat: MSG.beat,
        unreachable: MSG.unreachable,
        snapStatus: MSG.snapStatus,
        checkQuorum: MSG.checkQuorum,
      })) {
        deliver(
          `a local-only ${type} message`,
          raftBatch(from, [raftMessage({ type: v, to: raftId(n), from })]),
        );
      }
      deliver('a batch from raft id 0', raftBatch(0, [heartbeat({ from: 0 })]));
      deliver('an empty batch from raft id 0', raftBatch(0, []));
      deliver('a message from id 0 in a batch from a member', raftBatch(from, [heartbeat({ from: 0 })]));
      deliver(
        'a message claiming another sender than its batch',
        raftBatch(from, [heartbeat({ from: other })]),
        [status.PERMISSION_DENIED],
      );
      deliver(
        'a batch from raft id 2^64-1',
        raftBatch(2n ** 64n - 1n, [heartbeat({ from: 2n ** 64n - 1n })]),
      );

      // Propose: commands that are not JSON, or JSON that is not a command. Nothing is proposed.
      for (const [what, command] of [
        ['empty', ''],
        ['truncated JSON', '{"type": "vm.create", '],
        ['not JSON', 'not json at all'],
        ['not UTF-8', Buffer.from([0xff, 0xfe, 0x7b, 0x7d])],
        ['a number', '42'],
        ['null', 'null'],
        ['an array', '[]'],
        ['an empty object', '{}'],
        ['an unknown type', '{"type":"vm.explode","vmId":"vm-1"}'],
        ['a command missing its fields', '{"type":"vm.create"}'],
        ['a token grab missing fields', '{"type":"token.add","role":"admin"}'],
        ['deep nesting', `${'['.repeat(5000)}${']'.repeat(5000)}`],
        ['random bytes', randomBytes(100)],
      ] as [string, string | Buffer][]) {
        add(n, {
          method: 'propose',
          what: `a command that is ${what}`,
          body: proposeRequest(command),
          expect: INVALID,
        });
      }

      // ChangeMembership: ids that are no Raft id, kinds that are no kind, contexts that are not JSON objects.
      for (const [what, body] of [
        ['add raft id 0', membershipChange(KIND.add, 0)],
        ['remove raft id 0', membershipChange(KIND.remove, 0)],
        ['add raft id 2^53', membershipChange(KIND.add, 2n ** 53n)],
        ['remove raft id 2^64-1', membershipChange(KIND.remove, 2n ** 64n - 1n)],
        ['kind 7', membershipChange(7, 4242)],
        ['kind -1', membershipChange(-1, 4242)],
        ['a context that is not JSON', membershipChange(KIND.add, 4242, '{nope')],
        ['a context that is a number', membershipChange(KIND.add, 4242, '42')],
        ['a context that is an array', membershipChange(KIND.add, 4242, '[]')],
        ['a context that is not UTF-8', membershipChange(KIND.add, 4242, Buffer.from([0xc3, 0x28]))],
      ] as [string, Buffer][]) {
        add(n, { method: 'changeMembership', what, body, expect: INVALID });
      }

      // The migration RPCs: ids of no migration, of every shape.
      for (const method of MIGRATION_METHODS) {
        for (const [what, id] of [
          ['an empty id', ''],
          ['an unknown id', 'mig-doesnotexist'],
          ['an id that is no id', '../../etc/passwd'],
          ['a 100 kB id', 'm'.repeat(100_000)],
          ['an id that is not UTF-8', Buffer.from([0xff, 0xff, 0xfe])],
        ] as [string, string | Buffer][]) {
          add(n, {
            method,
            what,
            body: migrationRequest(id, 'fuzz'),
            expect: [status.NOT_FOUND, ...INVALID],
          });
        }
      }
    }
    await batch(list);
    await stillServing('malformed requests');
  });

  it('callers without a member certificate are refused at TLS or with PERMISSION_DENIED', async () => {
    const list: [NodeProcess, Expectation][] = [];
    const add = (n: NodeProcess, e: Omit<Expectation, 'kind'>) =>
      list.push([n, { kind: 'unauthenticated', ...e }]);
    for (const n of nodes) {
      const from = raftId(peerOf(n));
      const valid: Record<Method, Buffer> = {
        deliver: raftBatch(from, []),
        propose: proposeRequest(
          JSON.stringify({
            type: 'token.add',
            tokenId: 'tok-mallory',
            name: 'mallory',
            role: 'admin',
            sha256: '0'.repeat(64),
            at: new Date().toISOString(),
          }),
        ),
        changeMembership: membershipChange(KIND.remove, from),
        prepare: migrationRequest('mig-doesnotexist'),
        await: migrationRequest('mig-doesnotexist'),
        abort: migrationRequest('mig-doesnotexist', 'fuzz'),
      };
      for (const method of ALL_METHODS) {
        // Refused in the handshake: grpc-js reports UNAVAILABLE and the call never reaches a handler.
        for (const caller of [anonymous, foreign]) {
          add(n, {
            method,
            caller,
            what: 'the handshake',
            body: valid[method],
            expect: [status.UNAVAILABLE],
          });
        }
        add(n, {
          method,
          caller: mallory,
          what: 'a CA-signed certificate naming no member',
          body: valid[method],
          expect: [status.PERMISSION_DENIED],
        });
      }
      // A member's certificate speaks only for that member.
      const other = raftId(nodes.find((x) => x !== n && x !== peerOf(n)) as NodeProcess);
      add(n, {
        method: 'deliver',
        what: "a batch in another member's name",
        body: raftBatch(other, []),
        expect: [status.PERMISSION_DENIED],
      });
      add(n, {
        method: 'deliver',
        caller: mallory,
        what: 'a batch from a raft id no node has',
        body: raftBatch(4242, [raftMessage({ type: MSG.heartbeat, to: raftId(n), from: 4242, term: 1 })]),
        expect: [status.PERMISSION_DENIED],
      });
    }
    await batch(list);
    const tokens = await (nodes[0] as NodeProcess).api<{ items: { name: string }[] }>(
      'GET',
      '/v1/tokens',
      cluster.adminToken,
    );
    expect(tokens.body.items.map((t) => t.name)).not.toContain('mallory');
    await stillServing('unauthenticated callers');
  });

  it(`oversized requests (over ${MAX_RECEIVE} bytes, plain and gzip) are RESOURCE_EXHAUSTED`, async () => {
    const big = Buffer.alloc(MAX_RECEIVE + 1);
    const list: [NodeProcess, Expectation][] = [];
    for (const [i, method] of ALL_METHODS.entries()) {
      const n = nodes[i % nodes.length] as NodeProcess;
      for (const gzip of [false, true]) {
        list.push([
          n,
          {
            kind: 'oversized',
            method,
            what: `${big.length} bytes${gzip ? ' gzip-compressed' : ''}`,
            body: big,
            expect: [status.RESOURCE_EXHAUSTED],
            timeoutMs: 15_000,
            gzip,
          },
        ]);
      }
    }
    // One at a time: each holds a 64 MiB buffer.
    for (const entry of list) await expectStatus(...entry);
    await stillServing('oversized requests');
  });

  it('out-of-order migration RPCs: never prepared, not this node, not the caller, twice, after abort', async () => {
    const [source, target, bystander] = nodes as [NodeProcess, NodeProcess, NodeProcess];
    // The VM's image exists only on the target, so the source cannot run it and never starts the
    // migration itself: this test is the only caller of the target's RPCs.
    mkdirSync(join(target.dataDir, 'images', 'fuzz'), { recursive: true });
    writeFileSync(join(target.dataDir, 'images', 'fuzz', 'vmlinux'), 'not a kernel');
    const token = cluster.adminToken;
    const vm = await source.api<{ id: string }>('POST', '/v1/vms', token, {
      name: 'fuzz-vm',
      image: 'fuzz',
      vcpus: 1,
      memoryMiB: 16,
      nodeId: nodeIdOf.get(source.name),
    });
    expect(vm.status).toBe(201);
    expect((await source.api('POST', `/v1/vms/${vm.body.id}/start`, token)).status).toBe(200);
    const created = await source.api<MigrationRecord>('POST', '/v1/migrations', token, {
      vmId: vm.body.id,
      targetNodeId: nodeIdOf.get(target.name),
    });
    expect(created.status).toBe(201);
    const id = created.body.id;
    await until('every node knows the migration', async () => {
      const rs = await Promise.all(nodes.map((n) => n.api('GET', `/v1/migrations/${id}`, token)));
      return rs.every((r) => r.status === 200);
    });

    const asSource = memberCallers.get(source.name) as Caller;
    const asBystander = memberCallers.get(bystander.name) as Caller;
    const step = (
      n: NodeProcess,
      method: Method,
      caller: Caller,
      what: string,
      expected: grpc.status[],
      timeoutMs?: number,
    ) =>
      expectStatus(n, {
        kind: 'out-of-order',
        method,
        caller,
        what,
        body: migrationRequest(id, 'fuzz'),
        expect: expected,
        ...(timeoutMs === undefined ? {} : { timeoutMs }),
      });

    await step(target, 'await', asSource, 'await before any prepare', [status.NOT_FOUND]);
    await step(target, 'abort', asBystander, 'abort by a member that is not the source', [
      status.PERMISSION_DENIED,
    ]);
    await step(target, 'abort', asSource, 'abort before any prepare (idempotent)', [status.OK]);
    await step(bystander, 'prepare', asSource, 'prepare on a node that is not the target', [
      status.FAILED_PRECONDITION,
    ]);
    await step(target, 'prepare', asBystander, 'prepare by a member that is not the source', [
      status.PERMISSION_DENIED,
    ]);
    await step(source, 'prepare', asSource, 'prepare on the source itself', [status.FAILED_PRECONDITION]);
    const prepared = await step(target, 'prepare', asSource, 'the first prepare', [status.OK]);
    expect(prepared.response?.length ?? 0, 'an offer').toBeGreaterThan(0);
    await step(target, 'prepare', asSource, 'a second prepare', [status.ALREADY_EXISTS]);
    await step(target, 'await', asBystander, 'await by a member that is not the source', [
      status.PERMISSION_DENIED,
    ]);
    await step(target, 'abort', asBystander, 'abort by a member that is not the source', [
      status.PERMISSION_DENIED,
    ]);
    // The source's own Await lasts the transfer; nothing is sent, so its deadline ends it.
    await step(target, 'await', asSource, 'await with no stream coming', [status.DEADLINE_EXCEEDED], 1000);
    await step(target, 'abort', asSource, 'the abort', [status.OK]);
    await step(target, 'abort', asSource, 'a second abort', [status.OK]);
    await step(target, 'await', asSource, 'await after the abort', [status.ABORTED]);
    const cancelled = await source.api('POST', `/v1/migrations/${id}/cancel`, token, { reason: 'fuzz' });
    expect(cancelled.status).toBe(200);
    await until('the target sees the migration cancelled', async () => {
      const r = await target.api<MigrationRecord>('GET', `/v1/migrations/${id}`, token);
      return r.body.phase === 'cancelled';
    });
    await step(target, 'prepare', asSource, 'prepare of a cancelled migration', [status.FAILED_PRECONDITION]);
    await stillServing('out-of-order migration calls');
  });

  it('out-of-order Raft and membership messages: stale and future terms, unknown members', async () => {
    const list: [NodeProcess, Expectation][] = [];
    const add = (n: NodeProcess, e: Omit<Expectation, 'kind'>) =>
      list.push([n, { kind: 'out-of-order', ...e }]);
    for (const n of nodes) {
      const s = (await cluster.statusOf(n)) as ClusterStatusBody;
      const from = raftId(peerOf(n));
      const to = raftId(n);
      // Raft answers these itself (a stale term is ignored, a newer one starts an election); the
      // transport accepts them like any message from that member.
      for (const [what, m] of [
        ['a heartbeat of term 1', { type: MSG.heartbeat, term: 1 }],
        ['an append of term 1 at index 1', { type: MSG.append, term: 1, logTerm: 1, index: 1, commit: 1 }],
        [
          'an append response from the far future of the log',
          { type: MSG.appendResponse, term: s.term, index: 1e9 },
        ],
        ['a rejected append response', { type: MSG.appendResponse, term: s.term, index: 1e9, reject: true }],
        ['a snapshot message with no snapshot', { type: MSG.snapshot, term: s.term }],
        [
          'a pre-vote of a future term',
          { type: MSG.requestPreVote, term: s.term + 100, logTerm: 1, index: 1 },
        ],
        [
          'a vote request of a future term',
          { type: MSG.requestVote, term: s.term + 100, logTerm: 1, index: 1 },
        ],
        ['a heartbeat of a future term', { type: MSG.heartbeat, term: s.term + 100 }],
      ] as [string, Partial<RaftFields>][]) {
        add(n, {
          method: 'deliver',
          what,
          body: raftBatch(from, [raftMessage({ type: MSG.heartbeat, to, from, ...m })]),
          expect: [status.OK, status.INVALID_ARGUMENT],
        });
      }
    }
    // Membership first, while the leader is stable: removing a non-member is a no-op (OK, like a
    // second Abort), re-adding a voter changes nothing, adding an unregistered id is refused.
    const leader = await cluster.waitStable();
    const follower = nodes.find((n) => n !== leader) as NodeProcess;
    for (const [what, body, expected] of [
      ['remove a raft id no node has', membershipChange(KIND.remove, 4242), [status.OK]],
      ['add a raft id no node registered', membershipChange(KIND.add, 4242), [status.FAILED_PRECONDITION]],
      ['add a node that already is a voter', membershipChange(KIND.add, raftId(follower)), [status.OK]],
    ] as [string, Buffer, grpc.status[]][]) {
      await expectStatus(leader, {
        kind: 'out-of-order',
        method: 'changeMembership',
        what,
        body,
        expect: expected,
      });
    }
    await batch(list);
    await stillServing('out-of-order Raft messages');
    const voters = ((await cluster.statusOf(await cluster.waitStable())) as ClusterStatusBody).voters;
    expect(voters.sort()).toEqual([...raftIdOf.values()].sort());
  });
});
