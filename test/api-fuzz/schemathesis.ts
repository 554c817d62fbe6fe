/**
 * Schemathesis, the OpenAPI fuzzer, as the api-fuzz test drives it: installed by install.sh, run as
 * one pass per credential against one node, and read back from the NDJSON events it writes (per
 * phase case counts, failures by check with one request each, errors).
 */
import { execFile, spawn } from 'node:child_process';
import { createWriteStream, mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const INSTALL = resolve(__dirname, 'install.sh');
const HOOKS = resolve(__dirname, 'hooks.py');
const CONFIG = resolve(__dirname, 'schemathesis.toml');
/** install.sh's exit status when this machine cannot have Schemathesis (the reason is on stderr). */
const CANNOT_INSTALL = 3;

export type Installed = { command: string } | { skip: string };

/** Runs install.sh: quick when the venv is there, a pip install (and as root an apt-get) when not. */
export function installSchemathesis(): Promise<Installed> {
  return new Promise((res, rej) => {
    execFile(INSTALL, [], { timeout: 600_000 }, (err, stdout, stderr) => {
      if (!err) return res({ command: stdout.trim() });
      if (err.code === CANNOT_INSTALL) return res({ skip: stderr.trim() });
      rej(new Error(`${INSTALL} failed (${err.code ?? err.signal}): ${stderr.trim()}`));
    });
  });
}

export interface PassOptions {
  command: string;
  /** Names the pass in the report and its output directory. */
  name: string;
  /** The OpenAPI document (a file, so the run is reproducible from what was fuzzed). */
  document: string;
  baseUrl: string;
  token: string;
  seed: number;
  phases: string[];
  checks: string[];
  maxTimeS: number;
  maxExamples: number;
  outDir: string;
  /** For hooks.py: DWCP_FUZZ_PINNED_NODE, DWCP_FUZZ_PINNED_TOKENS, DWCP_FUZZ_VIEWER_TOKEN. */
  env: Record<string, string>;
}

export interface FailureExample {
  operation: string;
  phase: string;
  title: string;
  message: string;
  /** A curl command for the request (the token left as $TOKEN), then what it got. */
  curl: string;
  status: number | undefined;
  response: string;
}

export interface PassResult {
  name: string;
  exitCode: number | null;
  elapsedMs: number;
  /** Schemathesis's own terminal output, for the details of every failure. */
  logFile: string;
  casesByPhase: Record<string, number>;
  /** Why a phase that was asked for did not run (e.g. stateful: not_applicable, no links). */
  skippedPhases: Record<string, string>;
  /** Per check: its failing test cases, and the first failing request of each operation. */
  failures: Map<string, { cases: number; byOperation: Map<string, FailureExample> }>;
  /** Network errors, hook errors and the like: each is a reason to fail too. */
  errors: string[];
}

export async function runPass(o: PassOptions): Promise<PassResult> {
  const dir = join(o.outDir, o.name);
  mkdirSync(dir, { recursive: true });
  const ndjson = join(dir, 'events.ndjson');
  const logFile = join(dir, 'schemathesis.log');
  const args = [
    '--no-color',
    '--config-file',
    CONFIG,
    'run',
    o.document,
    '--url',
    o.baseUrl,
    '--header',
    `Authorization: Bearer ${o.token}`,
    '--phases',
    o.phases.join(','),
    '--checks',
    o.checks.join(','),
    '--seed',
    String(o.seed),
    '--max-time',
    String(o.maxTimeS),
    '--max-examples',
    String(o.maxExamples),
    '--report',
    'ndjson',
    '--report-ndjson-path',
    ndjson,
  ];
  const started = Date.now();
  // Asynchronous on purpose: the node processes' output pipes are drained by this event loop.
  const exitCode = await new Promise<number | null>((res, rej) => {
    const p = spawn(o.command, args, {
      cwd: dir,
      env: { ...process.env, ...o.env, SCHEMATHESIS_HOOKS: HOOKS },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const log = createWriteStream(logFile);
    p.stdout.pipe(log, { end: false });
    p.stderr.pipe(log, { end: false });
    p.once('error', rej);
    p.once('close', (code) => log.end(() => res(code)));
  });
  const events = readEvents(ndjson);
  // A phase that was not asked for is skipped as "disabled"; that is no news.
  for (const phase of Object.keys(events.skippedPhases)) {
    if (!o.phases.includes(phase)) delete events.skippedPhases[phase];
  }
  return { name: o.name, exitCode, elapsedMs: Date.now() - started, logFile, ...events };
}

type Json = Record<string, unknown>;
interface Recorded {
  /** The operation, e.g. `POST /v1/vms`. */
  label: string;
  cases?: Record<string, { value: { method: string; meta?: { phase?: { name?: string } } } }>;
  checks?: Record<string, { name: string; status: string; failure_info?: { failure: Json } }[]>;
  interactions?: Record<string, { request: RecordedRequest; response?: RecordedResponse }>;
}
interface RecordedRequest {
  method: string;
  uri: string;
  headers: Record<string, string[]>;
  body?: unknown;
}
interface RecordedResponse {
  status_code: number;
  content?: unknown;
}

function readEvents(file: string): Omit<PassResult, 'name' | 'exitCode' | 'elapsedMs' | 'logFile'> {
  const out: ReturnType<typeof readEvents> = {
    casesByPhase: {},
    skippedPhases: {},
    failures: new Map(),
    errors: [],
  };
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    out.errors.push(`Schemathesis wrote no events (${file}); see its log`);
    return out;
  }
  for (const line of text.split('\n')) {
    if (!line) continue;
    const [[kind, e]] = Object.entries(JSON.parse(line) as Record<string, Json>) as [[string, Json]];
    if (kind === 'PhaseFinished') {
      const phase = e.phase as { name: string; skip_reason?: string };
      if (e.status === 'skip' && phase.skip_reason) out.skippedPhases[phase.name] = phase.skip_reason;
    } else if (kind === 'ScenarioFinished') {
      scenario(out, String(e.phase), e.recorder as Recorded);
    } else if (kind === 'NonFatalError') {
      const v = e.value as { type: string; message: string };
      out.errors.push(`${e.label} (${e.phase ?? 'run'}): ${v.type}: ${firstLine(v.message)}`);
    } else if (kind === 'FatalError') {
      const v = e.exception as { type: string; message: string };
      out.errors.push(`fatal: ${v.type}: ${firstLine(v.message)}`);
    }
  }
  // A phase that ran in a later cycle was not skipped after all.
  for (const phase of Object.keys(out.skippedPhases)) {
    if ((out.casesByPhase[phase] ?? 0) > 0) delete out.skippedPhases[phase];
  }
  return out;
}

function scenario(out: ReturnType<typeof readEvents>, phase: string, r: Recorded): void {
  const cases = Object.keys(r.cases ?? {});
  out.casesByPhase[phase] = (out.casesByPhase[phase] ?? 0) + cases.length;
  for (const [caseId, checks] of Object.entries(r.checks ?? {})) {
    // A check can run more than once on a case (shrinking, replays); it counts once.
    const failed = new Set<string>();
    for (const c of checks) {
      if (c.status !== 'failure' || failed.has(c.name)) continue;
      failed.add(c.name);
      const seen = out.failures.get(c.name) ?? { cases: 0, byOperation: new Map() };
      out.failures.set(c.name, seen);
      seen.cases += 1;
      if (seen.byOperation.has(r.label)) continue;
      const f = c.failure_info?.failure ?? {};
      const interaction = r.interactions?.[caseId];
      seen.byOperation.set(r.label, {
        operation: r.label,
        phase,
        title: String(f.title ?? ''),
        message: String(f.message ?? ''),
        curl: interaction ? curl(interaction.request) : '(no request recorded)',
        status: interaction?.response?.status_code,
        response: interaction?.response ? decode(interaction.response.content).slice(0, 300) : '',
      });
    }
  }
}

function decode(v: unknown): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && '$base64' in v)
    return Buffer.from(String(v.$base64), 'base64').toString('utf8');
  return JSON.stringify(v);
}

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** The request as curl sends it; Schemathesis filters the Authorization header out of its events. */
function curl(req: RecordedRequest): string {
  const parts = ['curl', '-X', req.method];
  for (const [name, values] of Object.entries(req.headers)) {
    for (const v of values) {
      parts.push(
        '-H',
        name.toLowerCase() === 'authorization' ? '"Authorization: Bearer $TOKEN"' : quote(`${name}: ${v}`),
      );
    }
  }
  const body = decode(req.body);
  if (req.body !== undefined && req.body !== null) parts.push('--data-binary', quote(body));
  parts.push(quote(req.uri));
  return parts.join(' ');
}

function firstLine(s: string): string {
  return s.split('\n').find((l) => l.trim() !== '') ?? s;
}
