/**
 * Records what clients of the replicated key-value state saw (calls, returns, outcomes) and checks
 * that history for linearizability with the porcupine checker in ./checker (a Go program).
 */
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, renameSync } from 'node:fs';
import { join, resolve } from 'node:path';

const REPO = resolve(__dirname, '..', '..');
const CHECKER_SRC = join(__dirname, 'checker');
const CHECKER_BIN = join(REPO, '.dwcp', 'bin', 'lincheck');

export type OperationKind = 'put' | 'get' | 'cas' | 'delete';

/** What the client was told; null output means the outcome is unknown. */
export interface OperationOutput {
  ok?: boolean;
  value?: string | null;
}

/** One operation in the checker's input format (see checker/README.md). */
export interface RecordedOperation {
  clientId: number;
  kind: OperationKind;
  key: string;
  value?: string;
  expected?: string | null;
  /** ns since the recorder started */
  call: number;
  /** ns since the recorder started; null when the client never got an answer */
  return: number | null;
  output: OperationOutput | null;
}

export interface History {
  operations: RecordedOperation[];
}

interface ArgsByKind {
  put: [args: { value: string }];
  get: [];
  cas: [args: { expected: string | null; value: string }];
  delete: [];
}

interface OutputByKind {
  put: [];
  get: [output: { value: string | null }];
  cas: [output: { ok: boolean }];
  delete: [];
}

/** One invoked operation: complete it exactly once, with ok(), fail() or refused(). */
export interface OperationHandle<K extends OperationKind> {
  /** The client got an answer: get reports the value it read (null: absent), cas whether it swapped. */
  ok(...output: OutputByKind[K]): void;
  /**
   * The client got no answer (timeout, error, lost connection). A write may still take effect, so
   * it is kept with an unknown outcome; a read observed nothing and is dropped.
   */
  fail(): void;
  /**
   * The request provably never took effect (the connection was refused, or the server rejected it
   * before proposing anything, e.g. 400/401/404). It is left out of the history, as the checker
   * wants: kept as an unknown outcome it would still be sound, but every such write widens the
   * search.
   */
  refused(): void;
}

interface Pending {
  op: RecordedOperation;
  state: 'pending' | 'ok' | 'failed' | 'refused';
}

/** Collects a history from any number of concurrent clients sharing one clock. */
export class HistoryRecorder {
  private readonly start = process.hrtime.bigint();
  private readonly entries: Pending[] = [];

  invoke<K extends OperationKind>(
    clientId: number,
    kind: K,
    key: string,
    ...args: ArgsByKind[K]
  ): OperationHandle<K> {
    const op: RecordedOperation = { clientId, kind, key, call: 0, return: null, output: null };
    const [input] = args as [{ value: string; expected?: string | null }?];
    if (input !== undefined) op.value = input.value;
    if (kind === 'cas') op.expected = input?.expected ?? null;
    const entry: Pending = { op, state: 'pending' };
    this.entries.push(entry);
    // Last, so that the call time is as late as it can be: closer to when the request goes out.
    op.call = this.now();
    const complete = (state: Pending['state']): void => {
      if (entry.state !== 'pending') {
        throw new Error(`${kind}(${key}) by client ${clientId} was already completed (${entry.state})`);
      }
      entry.state = state;
    };
    return {
      ok: (...output) => {
        const ret = this.now();
        complete('ok');
        op.return = ret;
        const [out] = output as [OperationOutput?];
        if (kind === 'get') op.output = { value: out?.value ?? null };
        else if (kind === 'cas') op.output = { ok: out?.ok === true };
        else op.output = { ok: true };
      },
      fail: () => {
        const ret = this.now();
        complete('failed');
        op.return = ret;
      },
      refused: () => complete('refused'),
    };
  }

  /**
   * The history so far. Operations still in flight are written as unknown outcomes (reads are
   * dropped), since nothing is known about them yet.
   */
  toJSON(): History {
    const operations: RecordedOperation[] = [];
    for (const { op, state } of this.entries) {
      if (state === 'refused') continue;
      if (state !== 'ok' && op.kind === 'get') continue;
      operations.push(state === 'ok' ? { ...op } : { ...op, output: null });
    }
    return { operations };
  }

  private now(): number {
    return Number(process.hrtime.bigint() - this.start);
  }
}

export interface CheckOptions {
  /** Give up after this long; the result is then 'Unknown'. The checker's default is 60 s. */
  timeoutMs?: number;
  /** When the history is not linearizable, write porcupine's HTML visualization here. */
  vizPath?: string;
}

export interface CheckResult {
  ok: boolean;
  result: 'Ok' | 'Illegal' | 'Unknown';
  operations: number;
  partitions: number;
  /** The checker's human summary (names the keys at fault when Illegal). */
  summary: string;
}

let built: Promise<string> | undefined;

/**
 * Builds the checker once per process and resolves with its path. checkLinearizable calls it;
 * call it from beforeAll with a long timeout, since a build with a cold Go cache takes ~20 s.
 */
export function buildChecker(): Promise<string> {
  built ??= new Promise<string>((resolveBuild, reject) => {
    mkdirSync(join(REPO, '.dwcp', 'bin'), { recursive: true });
    // Test files run in parallel processes: each builds to its own name and renames, which is atomic.
    const tmp = `${CHECKER_BIN}.${process.pid}.tmp`;
    execFile(
      'go',
      ['build', '-buildvcs=false', '-o', tmp, '.'],
      { cwd: CHECKER_SRC },
      (err, _stdout, stderr) => {
        if (err) {
          const why = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'go is not installed' : stderr;
          reject(new Error(`building the linearizability checker failed: ${why}`));
          return;
        }
        renameSync(tmp, CHECKER_BIN);
        resolveBuild(CHECKER_BIN);
      },
    );
  });
  return built;
}

const EXIT_RESULT: Record<number, CheckResult['result']> = { 0: 'Ok', 1: 'Illegal', 3: 'Unknown' };

/**
 * Checks a history with the Go checker. Resolves with the verdict (Ok, Illegal, or Unknown on
 * timeout); rejects when the history is malformed or the checker cannot run.
 */
export async function checkLinearizable(
  history: History | HistoryRecorder,
  opts: CheckOptions = {},
): Promise<CheckResult> {
  const bin = await buildChecker();
  const args: string[] = [];
  if (opts.timeoutMs !== undefined) args.push('-timeout', `${opts.timeoutMs}ms`);
  if (opts.vizPath !== undefined) args.push('-viz', opts.vizPath);
  const input = JSON.stringify(history instanceof HistoryRecorder ? history.toJSON() : history);

  return new Promise<CheckResult>((resolveCheck, reject) => {
    const child = spawn(bin, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    child.on('error', reject);
    child.on('close', (code) => {
      const result = code === null ? undefined : EXIT_RESULT[code];
      if (result === undefined) {
        reject(new Error(`linearizability checker exited with ${code}: ${stderr.trim()}`));
        return;
      }
      const report = JSON.parse(stdout) as Omit<CheckResult, 'summary'>;
      resolveCheck({
        ok: report.ok,
        result: report.result,
        operations: report.operations,
        partitions: report.partitions,
        summary: stderr.trim(),
      });
    });
    // The checker may exit before reading all of a large history (bad input): ignore EPIPE then.
    child.stdin.on('error', () => {});
    child.stdin.end(input);
  });
}
