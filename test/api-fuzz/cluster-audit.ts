/**
 * What the api-fuzz test checks on the cluster itself around a fuzz run: no node process crashed or
 * restarted, every node still answers, every member still commits a write, and the members agree
 * on the replicated state, read linearizably through each of them.
 */
import type { LocalCluster, NodeProcess } from '../../libs/local-cluster/src/local-cluster';

export interface ProcessIdentity {
  name: string;
  pid: number | undefined;
  /** process_start_time_seconds from /metrics: a restart behind the same pid would change it. */
  startTime: number;
}

export async function identities(cluster: LocalCluster): Promise<ProcessIdentity[]> {
  return Promise.all(
    cluster.nodes.map(async (n) => ({
      name: n.name,
      pid: n.proc?.pid,
      startTime: await n.metric('process_start_time_seconds'),
    })),
  );
}

/** Records every node exit from now on, with when it happened and the end of the node's log. */
export function watchExits(cluster: LocalCluster, started = Date.now()): string[] {
  const exits: string[] = [];
  for (const n of cluster.nodes) {
    n.proc?.once('exit', (code, signal) => {
      const at = ((Date.now() - started) / 1000).toFixed(1);
      exits.push(
        `${n.name} exited (code ${code}, signal ${signal}) ${at} s into the run; log tail:\n${tail(n)}`,
      );
    });
  }
  return exits;
}

/** Problems with the processes: gone, or not the ones that were there before. */
export async function processProblems(cluster: LocalCluster, before: ProcessIdentity[]): Promise<string[]> {
  const problems: string[] = [];
  for (const b of before) {
    const n = cluster.nodes.find((x) => x.name === b.name) as NodeProcess;
    if (!n.running) continue; // watchExits reports it, with its log
    if (n.proc?.pid !== b.pid) problems.push(`${n.name}: pid ${b.pid} became ${n.proc?.pid}`);
    const startTime = await n.metric('process_start_time_seconds').catch(() => undefined);
    if (startTime === undefined) problems.push(`${n.name}: /metrics does not answer`);
    else if (startTime !== b.startTime)
      problems.push(`${n.name}: restarted (started at ${startTime}, was ${b.startTime})`);
  }
  return problems;
}

interface Member {
  nodeId: string;
  apiUrl: string;
}

/**
 * Every member still commits a write: a viewer token created through each (retried for up to `ms`
 * in all, as an election may be under way), then found on every member by a linearizable read. Reads alone
 * would pass a cluster that has lost the ability to commit.
 */
export async function writeProblems(
  cluster: LocalCluster,
  via: NodeProcess,
  token: string,
  ms = 20_000,
): Promise<string[]> {
  const members = await memberProcesses(cluster, via, token);
  if (typeof members === 'string') return [members];
  const problems: string[] = [];
  const written: string[] = [];
  const end = Date.now() + ms;
  for (const n of members) {
    const name = `audit-write-via-${n.name}`;
    let last = '';
    for (;;) {
      const r = await n.api('POST', '/v1/tokens', token, { name, role: 'viewer' }).catch((e: Error) => e);
      if (!(r instanceof Error) && r.status === 201) {
        written.push(name);
        break;
      }
      last = r instanceof Error ? r.message : `${r.status} ${JSON.stringify(r.body).slice(0, 200)}`;
      if (Date.now() > end) {
        problems.push(`${n.name} (a member) commits no write: POST /v1/tokens answered ${last}`);
        break;
      }
      await new Promise((res) => setTimeout(res, 500));
    }
  }
  for (const n of members) {
    const tokens = await read<{ name: string }[]>(n, '/v1/tokens', token);
    if (typeof tokens === 'string') continue; // stateProblems reports the failed read
    const missing = written.filter((w) => !tokens.some((t) => t.name === w));
    if (missing.length > 0) problems.push(`${n.name}: acknowledged writes missing: ${missing.join(', ')}`);
  }
  return problems;
}

/** The running processes of the members `via` knows, or why they cannot be told. */
async function memberProcesses(
  cluster: LocalCluster,
  via: NodeProcess,
  token: string,
): Promise<NodeProcess[] | string> {
  const members = await read<Member[]>(via, '/v1/cluster/members', token);
  if (typeof members === 'string') return `${via.name}: members: ${members}`;
  return cluster.nodes.filter((n) => n.running && members.some((m) => m.apiUrl === n.apiUrl));
}

const RESOURCES = ['/v1/nodes', '/v1/vms', '/v1/migrations', '/v1/tokens', '/v1/cluster/members'];

/**
 * Every node answers /health/live and /health/ready; members are ready (know a leader) and agree, read linearizably,
 * on the nodes, VMs, migrations, tokens and members. `via` is a node that must still be a member
 * (the pinned fuzz target). Reads are retried for up to `ms`, since an election may be under way and
 * a background write (a migration failing, say) may land between two nodes' reads; state that stays
 * different is reported with the difference.
 */
export async function stateProblems(
  cluster: LocalCluster,
  via: NodeProcess,
  token: string,
  ms = 20_000,
): Promise<string[]> {
  const end = Date.now() + ms;
  for (;;) {
    const problems = await auditOnce(cluster, via, token);
    if (problems.length === 0 || Date.now() > end) return problems;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

async function auditOnce(cluster: LocalCluster, via: NodeProcess, token: string): Promise<string[]> {
  const problems: string[] = [];
  const running = cluster.nodes.filter((n) => n.running);
  for (const n of running) {
    const live = await status(n, '/health/live');
    if (live !== 200) problems.push(`${n.name}: GET /health/live answered ${live}`);
  }
  const members = await read<Member[]>(via, '/v1/cluster/members', token);
  if (typeof members === 'string') return [...problems, `${via.name}: members: ${members}`];
  const memberNodes: NodeProcess[] = [];
  for (const m of members) {
    const n = cluster.nodes.find((x) => x.apiUrl === m.apiUrl);
    if (n === undefined) problems.push(`member ${m.nodeId} (${m.apiUrl}) is none of the cluster's processes`);
    else if (!n.running) problems.push(`member ${m.nodeId} (${n.name}) is not running`);
    else memberNodes.push(n);
  }
  // A removed node still serves its API, but it need not know a leader any more (503 then).
  for (const n of running) {
    const ready = await status(n, '/health/ready');
    const member = memberNodes.includes(n);
    if (ready !== 200 && (member || ready !== 503))
      problems.push(`${n.name} (${member ? 'a member' : 'removed'}): GET /health/ready answered ${ready}`);
  }
  for (const path of RESOURCES) {
    const views = await Promise.all(memberNodes.map(async (n) => ({ n, v: await read(n, path, token) })));
    const failed = views.filter((x) => typeof x.v === 'string');
    for (const f of failed) problems.push(`${f.n.name}: GET ${path}?consistency=linearizable: ${f.v}`);
    const texts = new Map<string, string[]>();
    for (const { n, v } of views.filter((x) => typeof x.v !== 'string')) {
      const text = JSON.stringify(v);
      texts.set(text, [...(texts.get(text) ?? []), n.name]);
    }
    if (texts.size > 1) {
      const described = [...texts].map(([text, names]) => `${names.join(',')}: ${text.slice(0, 400)}`);
      problems.push(`members disagree on ${path}:\n    ${described.join('\n    ')}`);
    }
  }
  return problems;
}

async function status(n: NodeProcess, path: string): Promise<number | string> {
  try {
    return (await fetch(`${n.apiUrl}${path}`, { signal: AbortSignal.timeout(5000) })).status;
  } catch (e) {
    return (e as Error).message;
  }
}

/** The items of a linearizable list read, sorted by id, or why the read failed. */
async function read<T = unknown>(n: NodeProcess, path: string, token: string): Promise<T | string> {
  try {
    const r = await n.api<{ items: { id?: string; nodeId?: string }[] }>(
      'GET',
      `${path}?consistency=linearizable`,
      token,
    );
    if (r.status !== 200) return `${r.status} ${JSON.stringify(r.body).slice(0, 200)}`;
    const key = (x: { id?: string; nodeId?: string }) => x.id ?? x.nodeId ?? '';
    return [...r.body.items].sort((a, b) => key(a).localeCompare(key(b))) as T;
  } catch (e) {
    return (e as Error).message;
  }
}

function tail(n: NodeProcess): string {
  return n.log.split('\n').slice(-15).join('\n');
}
