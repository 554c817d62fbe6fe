/**
 * Linearizability of the replicated state under real faults: concurrent clients put, get, cas and
 * delete label keys of one VM through random nodes of a 3-node cluster while a nemesis SIGKILLs
 * and restarts nodes, pauses one (SIGSTOP) or isolates one by pausing the other two. The history
 * they record must pass the porcupine checker. Needs the build (apps/cli/dist) and Go.
 *
 * DWCP_LIN_RUNS (default 2) runs, each on a fresh cluster, of DWCP_LIN_SECONDS (default 15) with
 * DWCP_LIN_CLIENTS (default 8) clients. DWCP_LIN_REPORT=1 writes docs/linearizability.md.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { machineInfo, machineMarkdown } from '../../bench/src/machine';
import { LocalCluster, type NodeProcess, until } from '../cluster/harness';
import { describeUnless, missingTools } from '../tools';
import {
  buildChecker,
  type CheckResult,
  checkLinearizable,
  HistoryRecorder,
  type OperationKind,
} from './history';

const RUNS = Number(process.env.DWCP_LIN_RUNS ?? 2);
const SECONDS = Number(process.env.DWCP_LIN_SECONDS ?? 15);
const CLIENTS = Number(process.env.DWCP_LIN_CLIENTS ?? 8);
const REPORT = process.env.DWCP_LIN_REPORT === '1';
const LABEL_KEYS = ['k0', 'k1', 'k2', 'k3', 'k4'];
const REQUEST_TIMEOUT_MS = 3000;
const NODE_ARGS = ['--raft-min-tick-ms', '20'];

const sleep = (ms: number) => new Promise<void>((done) => setTimeout(done, ms));
const between = (lo: number, hi: number) => lo + Math.random() * (hi - lo);
const pick = <T>(items: readonly T[]): T => items[Math.floor(Math.random() * items.length)] as T;

type FaultKind = 'kill' | 'pause' | 'minority';

interface RunSummary {
  run: number;
  seconds: number;
  /** Operations in the checked history, by kind (refused requests and failed reads are not in it). */
  operations: Record<OperationKind, number>;
  /** Writes whose outcome the client never learned. */
  unknownWrites: number;
  /** Requests that provably had no effect (connection refused), left out of the history. */
  refused: number;
  faults: Record<FaultKind, number>;
  /** Faults whose target (killed, paused, left alone) was the leader at the time. */
  leaderFaults: number;
  result: CheckResult['result'];
  checkSeconds: number;
}

/** What became of one HTTP request. */
type Reply = { kind: 'response'; status: number; body: unknown } | { kind: 'refused' } | { kind: 'unknown' };

interface ApiErrorBody {
  code?: string;
  fields?: { path: string }[];
}

async function request(node: NodeProcess, token: string, method: string, path: string, body?: unknown) {
  try {
    const r = await node.api(method, path, token, body, REQUEST_TIMEOUT_MS);
    return { kind: 'response', status: r.status, body: r.body } satisfies Reply as Reply;
  } catch (e) {
    // Refused at connect: no byte of the request left this process, so it cannot have taken effect.
    const code = ((e as Error).cause as NodeJS.ErrnoException | undefined)?.code;
    return (code === 'ECONNREFUSED' ? { kind: 'refused' } : { kind: 'unknown' }) satisfies Reply as Reply;
  }
}

/** Per-run bookkeeping shared by the clients, the nemesis and the final summary. */
class Run {
  readonly history = new HistoryRecorder();
  readonly faults: Record<FaultKind, number> = { kill: 0, pause: 0, minority: 0 };
  leaderFaults = 0;
  refused = 0;
  /** Responses the workload never provokes (400, 401, 404, a 409 that is not the expectation): bugs. */
  readonly unexpected: string[] = [];
  /** The last value each key was seen with, so that many cas calls expect the current value. */
  private readonly lastSeen = new Map<string, string | null>();
  private written = 0;

  constructor(
    readonly cluster: LocalCluster,
    readonly vmId: string,
  ) {}

  modelKey(label: string): string {
    return `${this.vmId}/${label}`;
  }

  /** One random operation by `clientId` through `node`; resolves with whether it got an answer. */
  async operate(clientId: number, node: NodeProcess): Promise<boolean> {
    const label = pick(LABEL_KEYS);
    const key = this.modelKey(label);
    const roll = Math.random();
    if (roll < 0.4) return this.get(clientId, node, label);
    const value = `c${clientId}-${this.written++}`;
    if (roll < 0.65) {
      const op = this.history.invoke(clientId, 'put', key, { value });
      return this.settleWrite(op, label, await this.patch(node, { set: { [label]: value } }), value);
    }
    if (roll < 0.9) {
      const expected = Math.random() < 0.25 ? null : (this.lastSeen.get(label) ?? null);
      const op = this.history.invoke(clientId, 'cas', key, { expected, value });
      const reply = await this.patch(node, { set: { [label]: value }, expect: { [label]: expected } });
      const body = (reply.kind === 'response' ? reply.body : undefined) as ApiErrorBody | undefined;
      // Only the expectation's own conflict proves the swap was refused; it names `expect.<label>`.
      if (
        reply.kind === 'response' &&
        reply.status === 409 &&
        body?.code === 'ERR_CONFLICT' &&
        body.fields?.some((f) => f.path === `expect.${label}`)
      ) {
        op.ok({ ok: false });
        return true;
      }
      return this.settleWrite(
        { ok: () => op.ok({ ok: true }), fail: op.fail, refused: op.refused },
        label,
        reply,
        value,
      );
    }
    const op = this.history.invoke(clientId, 'delete', key);
    return this.settleWrite(op, label, await this.patch(node, { set: { [label]: null } }), null);
  }

  private patch(node: NodeProcess, body: unknown): Promise<Reply> {
    return request(node, this.cluster.adminToken, 'PATCH', `/v1/vms/${this.vmId}/labels`, body);
  }

  private settleWrite(
    op: { ok(): void; fail(): void; refused(): void },
    label: string,
    reply: Reply,
    value: string | null,
  ): boolean {
    if (reply.kind === 'refused') {
      this.refused++;
      op.refused();
    } else if (reply.kind === 'unknown') {
      op.fail();
    } else if (reply.status === 200) {
      this.lastSeen.set(label, value);
      op.ok();
      return true;
    } else if ([400, 401, 403, 404, 409].includes(reply.status)) {
      // Rejected by validation, auth or the state machine: nothing was written.
      this.unexpected.push(`PATCH ${reply.status} ${JSON.stringify(reply.body)}`);
      op.refused();
    } else {
      // 503/504/500: the command may sit in the log and commit later.
      op.fail();
    }
    return false;
  }

  /** Resolves with whether the read got an answer. */
  async get(clientId: number, node: NodeProcess, label: string): Promise<boolean> {
    const op = this.history.invoke(clientId, 'get', this.modelKey(label));
    const reply = await request(
      node,
      this.cluster.adminToken,
      'GET',
      `/v1/vms/${this.vmId}?consistency=linearizable`,
    );
    if (reply.kind === 'response' && reply.status === 200) {
      const labels = (reply.body as { labels: Record<string, string> }).labels;
      const value = Object.hasOwn(labels, label) ? (labels[label] as string) : null;
      this.lastSeen.set(label, value);
      op.ok({ value });
      return true;
    }
    if (reply.kind === 'refused') this.refused++;
    if (reply.kind === 'response' && reply.status < 500)
      this.unexpected.push(`GET ${reply.status} ${JSON.stringify(reply.body)}`);
    op.fail();
    return false;
  }

  async leader(): Promise<NodeProcess | undefined> {
    const live = this.cluster.nodes.filter((n) => n.running);
    const statuses = await Promise.all(live.map((n) => this.cluster.statusOf(n).catch(() => undefined)));
    return live.find((_, i) => statuses[i]?.role === 'leader');
  }

  /** Injects one fault at a time, healing each before the next, until `end`. */
  async nemesis(end: number): Promise<void> {
    const nodes = this.cluster.nodes;
    while (Date.now() < end - 3000) {
      await sleep(between(500, 1500));
      const kind = pick<FaultKind>(['kill', 'pause', 'minority']);
      const leader = await this.leader();
      // Half the time the fault is aimed at the leader (killed, paused, or the one left alone),
      // whose loss is the interesting case.
      const target = leader && Math.random() < 0.5 ? leader : pick(nodes);
      this.faults[kind]++;
      if (target === leader) this.leaderFaults++;
      if (kind === 'kill') {
        await target.signal('SIGKILL');
        await sleep(between(200, 1500));
        target.start();
        await until(
          `${target.name} serves again after a restart`,
          async () => (await this.cluster.statusOf(target)) !== undefined,
          30_000,
        ).catch((e: Error) => {
          throw new Error(`${e.message}\n${target.name}'s log:\n${target.log}`);
        });
      } else if (kind === 'pause') {
        await target.signal('SIGSTOP');
        await sleep(between(1000, 3000));
        await target.signal('SIGCONT');
      } else {
        // `target` is left alone in a minority: the other two stop.
        const others = nodes.filter((n) => n !== target);
        for (const n of others) await n.signal('SIGSTOP');
        await sleep(between(1000, 2500));
        for (const n of others) await n.signal('SIGCONT');
      }
    }
  }
}

function emptyCounts(): Record<OperationKind, number> {
  return { put: 0, get: 0, cas: 0, delete: 0 };
}

interface RunOutcome {
  summary: RunSummary;
  verdict: CheckResult;
  unexpected: string[];
  /** Final reads (after healing) that got no answer. */
  unansweredFinalReads: number;
  /** Writes that were acknowledged (not unknown). */
  acknowledgedWrites: number;
}

async function runOnce(run: number): Promise<RunOutcome> {
  const cluster = new LocalCluster(NODE_ARGS);
  try {
    await cluster.start(3);
    const seed = cluster.nodes[0] as NodeProcess;
    const created = await seed.api<{ id: string }>('POST', '/v1/vms', cluster.adminToken, {
      name: 'lin',
      image: 'debian',
      vcpus: 1,
      memoryMiB: 64,
    });
    expect(created.status).toBe(201);
    const r = new Run(cluster, created.body.id);

    const started = Date.now();
    const end = started + SECONDS * 1000;
    const client = async (clientId: number) => {
      while (Date.now() < end) {
        // Back off after an error, as a real client would: a follower that still forwards to a
        // dead leader answers 503 at once, and each such write adds an unknown outcome.
        if (!(await r.operate(clientId, pick(cluster.nodes)))) await sleep(between(100, 300));
      }
    };
    await Promise.all([r.nemesis(end), ...Array.from({ length: CLIENTS }, (_, id) => client(id))]);
    const seconds = (Date.now() - started) / 1000;

    // Healed: every node must serve a linearizable read of every key. These reads go in the
    // history too, so that writes left unknown are observed one way or the other.
    await cluster.waitStable();
    let unansweredFinalReads = 0;
    for (const node of cluster.nodes) {
      for (const label of LABEL_KEYS) if (!(await r.get(CLIENTS, node, label))) unansweredFinalReads++;
    }

    const history = r.history.toJSON();
    const operations = emptyCounts();
    for (const op of history.operations) operations[op.kind]++;
    const unknownWrites = history.operations.filter((op) => op.output === null).length;
    const vizDir = mkdtempSync(join(tmpdir(), 'dwcp-lin-'));
    const vizPath = join(vizDir, 'history.html');
    const checkStart = Date.now();
    const verdict = await checkLinearizable(history, { timeoutMs: 120_000, vizPath });
    const summary: RunSummary = {
      run,
      seconds,
      operations,
      unknownWrites,
      refused: r.refused,
      faults: r.faults,
      leaderFaults: r.leaderFaults,
      result: verdict.result,
      checkSeconds: (Date.now() - checkStart) / 1000,
    };
    if (verdict.ok) {
      rmSync(vizDir, { recursive: true, force: true });
    } else {
      const historyPath = join(vizDir, 'history.json');
      writeFileSync(historyPath, JSON.stringify(history));
      console.error(`run ${run}: ${verdict.summary}\nhistory: ${historyPath}, visualization: ${vizPath}`);
    }
    const acknowledgedWrites = history.operations.filter(
      (op) => op.kind !== 'get' && op.output !== null,
    ).length;
    return { summary, verdict, unexpected: r.unexpected, unansweredFinalReads, acknowledgedWrites };
  } finally {
    await cluster.stop();
  }
}

function reportMarkdown(summaries: RunSummary[], load: number[]): string {
  const sum = (f: (s: RunSummary) => number) => summaries.reduce((a, s) => a + f(s), 0);
  const ops = (s: RunSummary) => s.operations.put + s.operations.get + s.operations.cas + s.operations.delete;
  const rows = summaries.map(
    (s) =>
      `| ${s.run} | ${s.seconds.toFixed(1)} | ${ops(s)} | ${s.operations.put} / ${s.operations.get} / ${s.operations.cas} / ${s.operations.delete} | ${s.unknownWrites} | ${s.refused} | ${s.faults.kill} / ${s.faults.pause} / ${s.faults.minority} (${s.leaderFaults}) | ${s.result} | ${s.checkSeconds.toFixed(1)} |`,
  );
  const passed = summaries.filter((s) => s.result === 'Ok').length;
  return [
    '# Linearizability under faults',
    '',
    'Written by `test/linearizability/cluster.spec.ts` with `DWCP_LIN_REPORT=1`. Each run starts a fresh',
    `3-node cluster of real \`dwcp node start\` processes on loopback (\`${NODE_ARGS.join(' ')}\`), creates one`,
    `VM and runs ${CLIENTS} clients for ${SECONDS} s. Each operation picks a random node and a random label key`,
    `(${LABEL_KEYS.join(', ')}; the model key is \`<vmId>/<label>\`) and does one of: get 40 %`,
    '(`GET /v1/vms/:id?consistency=linearizable`), put 25 % (`PATCH …/labels {set}`), cas 25 %',
    '(`PATCH …/labels {set, expect}`; 409 `ERR_CONFLICT` on `expect.<label>` = not swapped), delete 10 %',
    `(\`set: null\`). Requests time out after ${REQUEST_TIMEOUT_MS / 1000} s. A write that times out, or gets`,
    '503/504 or a broken connection, has an unknown outcome; a refused connection is left out. At the end,',
    'every node reads every key. The history is checked with porcupine (`test/linearizability/checker`).',
    '',
    'The nemesis injects one fault at a time, 0.5–1.5 s after the previous one healed, aimed at the',
    'leader half the time: **kill** (SIGKILL, restart from the same data dir 0.2–1.5 s later, wait until',
    'it serves), **pause** (SIGSTOP for 1–3 s, then SIGCONT), **minority** (SIGSTOP two nodes for',
    '1–2.5 s, leaving the target alone). Clients back off 100–300 ms after a request that got no answer.',
    '',
    'The check can fail: with the reads changed to `?consistency=local` (a node answers from its own',
    'state, without a ReadIndex round), the same workload gives Illegal histories, from followers and',
    'restarted nodes that are behind.',
    '',
    '## Result',
    '',
    `${passed} of ${summaries.length} runs linearizable; ${sum(ops)} operations checked, ${sum((s) => s.unknownWrites)} of them writes with an unknown outcome; faults: ${sum((s) => s.faults.kill)} kills, ${sum((s) => s.faults.pause)} pauses, ${sum((s) => s.faults.minority)} minority isolations (${sum((s) => s.leaderFaults)} of them aimed at the leader).`,
    '',
    '| run | s | ops checked | put / get / cas / delete | unknown writes | refused | kill / pause / minority (leader targeted) | result | check s |',
    '|---:|---:|---:|---|---:|---:|---|---|---:|',
    ...rows,
    '',
    '## Machine and command',
    '',
    machineMarkdown(machineInfo()),
    '- the cluster (3 node processes), the clients and the checker share the machine, with any other work',
    `- load average when the runs started (1/5/15 min): ${load.map((l) => l.toFixed(2)).join(' / ')}`,
    '',
    '```sh',
    'npx tsc -b',
    `DWCP_LIN_RUNS=${summaries.length} DWCP_LIN_SECONDS=${SECONDS} DWCP_LIN_CLIENTS=${CLIENTS} DWCP_LIN_REPORT=1 \\`,
    '  npx vitest run test/linearizability/cluster.spec.ts',
    '```',
    '',
  ].join('\n');
}

const describeGo = describeUnless(missingTools('go'));

describeGo('linearizability of the replicated state under kills, pauses and minority partitions', () => {
  const summaries: RunSummary[] = [];
  const load = loadavg();
  beforeAll(() => buildChecker(), 180_000);
  afterAll(() => {
    if (summaries.length === 0) return;
    const text = reportMarkdown(summaries, load);
    console.log(text);
    if (REPORT) writeFileSync(resolve(__dirname, '..', '..', 'docs', 'linearizability.md'), text);
  });

  for (let run = 1; run <= RUNS; run++) {
    it(
      `run ${run}: ${CLIENTS} clients for ${SECONDS} s`,
      async () => {
        const outcome = await runOnce(run);
        summaries.push(outcome.summary);
        expect(outcome.unexpected, 'responses that refuse a well-formed request').toEqual([]);
        expect(outcome.unansweredFinalReads, 'reads after every fault healed').toBe(0);
        // A cluster that served nothing would pass vacuously.
        expect(outcome.summary.operations.get).toBeGreaterThan(50);
        expect(outcome.acknowledgedWrites).toBeGreaterThan(50);
        expect(outcome.verdict.result, outcome.verdict.summary).toBe('Ok');
      },
      SECONDS * 1000 + 240_000,
    );
  }
});
