/**
 * Schemathesis fuzzes the REST API of a real 3-node cluster from the API's own OpenAPI document: an
 * admin pass over every operation in all four phases (stateful included) with every check, then a
 * viewer pass in which every write must be refused with 403 (hooks.py). The test fails on any failed
 * check or fuzzer error, a stateful phase that could not run, a node that crashed or restarted, a
 * member that can no longer commit a write, and members that disagree on the replicated state. Seeded (DWCP_FUZZ_SEED repeats the
 * generated cases) and bounded to about two minutes. Everything it wrote is in .build/api-fuzz/.
 */
import { randomInt } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalCluster } from '../../libs/local-cluster/src/local-cluster';
import { identities, processProblems, stateProblems, watchExits, writeProblems } from './cluster-audit';
import {
  type FailureExample,
  type Installed,
  installSchemathesis,
  type PassResult,
  runPass,
} from './schemathesis';

const OUT = resolve(__dirname, '..', '..', '.build', 'api-fuzz');
const ADMIN_PASS_S = 70;
const VIEWER_PASS_S = 20;

describe('the REST API under Schemathesis, on a 3-node cluster', () => {
  // The simulated hypervisor, and no images: POST /v1/vms records VMs that their node cannot launch
  // (it logs "image ... is not on this node"), so the fuzzer starts no QEMU and the load stays low.
  const cluster = new LocalCluster([
    '--raft-min-tick-ms',
    '20',
    '--raft-request-timeout-ms',
    '3000',
    '--hypervisor-driver',
    'simulated',
  ]);
  let installed: Installed;
  beforeAll(async () => {
    installed = await installSchemathesis();
  }, 600_000);
  afterAll(() => cluster.stop());

  it('answers every operation as documented, refuses a viewer every write, and stays one consistent cluster', async ({
    skip,
  }) => {
    if ('skip' in installed) {
      console.warn(`api-fuzz skipped: ${installed.skip}`);
      return skip(installed.skip);
    }
    const seed = process.env.DWCP_FUZZ_SEED ? Number(process.env.DWCP_FUZZ_SEED) : randomInt(2 ** 31);
    console.log(`api-fuzz seed: ${seed} (DWCP_FUZZ_SEED=${seed} repeats the generated cases)`);
    rmSync(OUT, { recursive: true, force: true });
    mkdirSync(OUT, { recursive: true });

    await cluster.start(3);
    // The target is n3, a follower, so writes go through its forwarding to the leader, and the
    // fuzzer may remove the leader and n2. It must not remove n3 itself: every later case would test
    // a node that is no longer a member. hooks.py pins n3 and the two tokens the run uses.
    const target = cluster.nodes[2] as (typeof cluster.nodes)[number];
    const token = async (name: string, role: string) => {
      const r = await target.api<{ id: string; token: string }>('POST', '/v1/tokens', cluster.adminToken, {
        name,
        role,
      });
      expect(r.status, `POST /v1/tokens ${JSON.stringify(r.body)}`).toBe(201);
      return r.body;
    };
    const admin = await token('fuzz-admin', 'admin');
    const viewer = await token('fuzz-viewer', 'viewer');
    const nodes = await target.api<{ items: { id: string; name: string }[] }>(
      'GET',
      '/v1/nodes',
      admin.token,
    );
    const pinnedNode = nodes.body.items.find((n) => n.name === target.name)?.id ?? '';
    expect(pinnedNode).not.toBe('');
    const document = join(OUT, 'openapi.json');
    writeFileSync(document, await (await fetch(`${target.apiUrl}/docs/json`)).text());

    const before = await identities(cluster);
    const exits = watchExits(cluster);
    const started = Date.now();
    const common = {
      command: installed.command,
      document,
      baseUrl: target.apiUrl,
      seed,
      outDir: OUT,
      env: { DWCP_FUZZ_PINNED_NODE: pinnedNode, DWCP_FUZZ_PINNED_TOKENS: `${admin.id},${viewer.id}` },
    };
    const passes: PassResult[] = [
      await runPass({
        ...common,
        name: 'admin',
        token: admin.token,
        phases: ['examples', 'coverage', 'fuzzing', 'stateful'],
        checks: ['all'],
        maxTimeS: ADMIN_PASS_S,
        maxExamples: 50,
      }),
      await runPass({
        ...common,
        name: 'viewer',
        token: viewer.token,
        // Without a successful write there is no state to walk, so no stateful phase.
        phases: ['examples', 'coverage', 'fuzzing'],
        checks: ['not_a_server_error', 'viewer_cannot_write'],
        maxTimeS: VIEWER_PASS_S,
        maxExamples: 50,
        env: { ...common.env, DWCP_FUZZ_VIEWER_TOKEN: viewer.token },
      }),
    ];

    const cluster_ = [
      ...exits,
      ...(await processProblems(cluster, before)),
      ...(await writeProblems(cluster, target, admin.token)),
      ...(await stateProblems(cluster, target, admin.token)),
    ];
    const problems = [...passes.flatMap(passProblems), ...cluster_.map((p) => `cluster: ${p}`)];
    const report = (everyOperation: boolean) =>
      [
        `api-fuzz: seed ${seed}; target ${target.name} (${pinnedNode}) ${target.apiUrl}; ` +
          `${((Date.now() - started) / 1000).toFixed(0)} s of fuzzing and checks`,
        ...passes.map((p) => describePass(p, everyOperation)),
        `cluster after the run: ${cluster_.length === 0 ? 'ok' : ''}`,
        ...cluster_.map((p) => `  ${p}`),
      ].join('\n');
    writeFileSync(join(OUT, 'report.txt'), `${report(true)}\n`);
    console.log(`${report(false)}\n(one failing request per operation: ${join(OUT, 'report.txt')})`);
    expect(problems, `see ${join(OUT, 'report.txt')}`).toEqual([]);
  }, 480_000);
});

function passProblems(p: PassResult): string[] {
  const out = [...p.failures].map(([check, f]) => `${p.name} pass: ${check} failed on ${f.cases} case(s)`);
  out.push(...p.errors.map((e) => `${p.name} pass: error: ${e}`));
  for (const [phase, why] of Object.entries(p.skippedPhases)) {
    // Examples run only where the document has examples; the other phases must run.
    if (phase !== 'examples') out.push(`${p.name} pass: the ${phase} phase did not run (${why})`);
  }
  if (p.exitCode !== 0 && out.length === 0)
    out.push(`${p.name} pass: Schemathesis exited ${p.exitCode} (see ${p.logFile})`);
  return out;
}

/** The pass in a few lines: one failing request per check, or with `everyOperation` one per operation. */
function describePass(p: PassResult, everyOperation: boolean): string {
  const phases = Object.entries(p.casesByPhase).map(([phase, n]) => `${phase} ${n}`);
  const skipped = Object.entries(p.skippedPhases).map(([phase, why]) => `${phase} skipped: ${why}`);
  const lines = [
    `${p.name} pass: ${(p.elapsedMs / 1000).toFixed(1)} s, exit ${p.exitCode}; generated cases: ` +
      `${[...phases, ...skipped].join(', ') || 'none'}; Schemathesis's own output: ${p.logFile}`,
    `  failures by check (failing cases; a failing request, $TOKEN = this pass's token):` +
      (p.failures.size === 0 ? ' none' : ''),
  ];
  for (const [check, f] of [...p.failures].sort(([a], [b]) => a.localeCompare(b))) {
    const examples = [...f.byOperation.values()];
    // A server error says the most; otherwise the first operation that failed.
    const shown = everyOperation
      ? examples
      : [examples.find((e) => (e.status ?? 0) >= 500) ?? (examples[0] as FailureExample)];
    lines.push(`    ${check}: ${f.cases} case(s) on ${examples.length} operation(s)`);
    for (const e of shown) {
      lines.push(
        `      ${e.operation} [${e.phase}] ${e.title}: ${e.message.split('\n').filter(Boolean).join(' / ')}`,
        `        ${everyOperation ? e.curl : clip(e.curl, 400)}`,
        `        -> ${e.status ?? 'no response'} ${e.response}`,
      );
    }
  }
  if (p.errors.length > 0) lines.push('  errors:', ...p.errors.map((e) => `    ${e}`));
  return lines.join('\n');
}

const clip = (s: string, n: number) => (s.length > n ? `${s.slice(0, n)}… (in full in report.txt)` : s);
