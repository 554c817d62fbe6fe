/** A CliIo that records what a command writes and lets a test press Ctrl-C. Test-only. */
import type { CliIo } from '../cli-io';
import { runCli } from '../main';

export interface RecordingIo {
  io: CliIo;
  stdout(): string;
  stderr(): string;
  /** Calls the handlers a command registered for Ctrl-C. */
  interrupt(): void;
}

export function recordingIo(over: Partial<CliIo> = {}): RecordingIo {
  const out: string[] = [];
  const err: string[] = [];
  const handlers = new Set<() => void>();
  const io: CliIo = {
    out: (t) => void out.push(t),
    err: (t) => void err.push(t),
    env: {},
    isTTY: false,
    onInterrupt: (h) => {
      handlers.add(h);
      return () => void handlers.delete(h);
    },
    sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
    pollIntervalMs: 5,
    ...over,
  };
  return {
    io,
    stdout: () => out.join(''),
    stderr: () => err.join(''),
    interrupt: () => {
      for (const h of [...handlers]) h();
    },
  };
}

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `dwcp <argv>` in this process. */
export async function dwcp(argv: readonly string[], over: Partial<CliIo> = {}): Promise<CliRun> {
  const r = recordingIo(over);
  const code = await runCli(argv, r.io);
  return { code, stdout: r.stdout(), stderr: r.stderr() };
}
