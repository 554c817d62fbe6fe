/**
 * The emulated WAN path the benches run over: two network namespaces joined by bench/wan's
 * user-space emulator (TUN), and children started inside them. Shared by bench:wan and
 * bench:migrate. Needs root.
 */
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';

export const REPO = resolve(__dirname, '..', '..');
export const WAN = join(REPO, 'bench', 'wan');
const EMULATOR = join(WAN, 'emulator', 'target', 'release', 'dwcp-wanem');
/** The namespace pair; DWCP_WAN_NS_A/_B give another, so two WAN benches can run at once. */
export const NS_A = process.env.DWCP_WAN_NS_A ?? 'dwcp-a';
export const NS_B = process.env.DWCP_WAN_NS_B ?? 'dwcp-b';
export const ADDR_A = '10.77.0.1';
export const ADDR_B = '10.77.0.2';
/** The emulator's TUN device, one in each namespace. */
export const WAN_IF = 'wan0';
export const LINK_MBIT: Record<string, number> = {
  datacenter: 10_000,
  regional: 1000,
  internet: 100,
  'bad-internet': 50,
};

/** One built-in emulator scenario, as `dwcp-wanem scenarios` prints it (each value per direction). */
export interface ScenarioPath {
  name: string;
  about: string;
  delay_ms: number;
  jitter_ms: number;
  loss: number;
  rate_mbit: number;
  queue_ms: number;
  mtu: number;
}

export function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
}

export function inNs(ns: string, cmd: string, args: string[]): ChildProcess {
  return spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
}

/** The JSON lines a child prints, in order. */
export function lines(child: ChildProcess): AsyncIterableIterator<string> {
  if (!child.stdout) throw new Error('child has no stdout');
  return createInterface({ input: child.stdout })[Symbol.asyncIterator]();
}

export async function nextJson(it: AsyncIterableIterator<string>): Promise<Record<string, unknown>> {
  const { value, done } = await it.next();
  if (done || typeof value !== 'string') throw new Error('peer ended without a result');
  return JSON.parse(value) as Record<string, unknown>;
}

export function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((r) => (child.exitCode !== null ? r(child.exitCode) : child.once('exit', r)));
}

// A TCP connect from inside the namespace: "connected" or "refused" both mean a SYN crossed the
// emulator and an answer came back; a timeout or "unreachable" means the path is not there yet.
const PROBE = `const s = require('node:net').connect({ host: process.argv[1], port: 9, timeout: 1000 });
s.on('connect', () => process.exit(0));
s.on('error', (e) => { console.error(e.code); process.exit(e.code === 'ECONNREFUSED' ? 0 : 1); });
s.on('timeout', () => { console.error('no answer in 1 s'); process.exit(1); });`;

function probeOnce(ns: string, host: string): Promise<string | null> {
  return new Promise((done) => {
    execFile('ip', ['netns', 'exec', ns, process.execPath, '-e', PROBE, host], (err, _out, stderr) =>
      done(err ? stderr.trim() || err.message : null),
    );
  });
}

/**
 * Resolves once a TCP connection attempt from namespace `ns` to `host` gets an answer through the
 * emulator; rejects if `emulator` exits first or the path stays silent for ~30 attempts.
 */
export async function waitForPath(ns: string, host: string, emulator: ChildProcess): Promise<void> {
  let last = '';
  for (let attempt = 0; attempt < 30; attempt++) {
    if (emulator.exitCode !== null) throw new Error(`the emulator exited (${emulator.exitCode})`);
    const failure = await probeOnce(ns, host);
    if (failure === null) return;
    last = failure;
    // Unreachable fails at once (the TUN device is not there yet); wait before asking again.
    await new Promise((r) => setTimeout(r, 300));
  }
  throw new Error(`no TCP answer from ${host} inside ${ns} (last: ${last})`);
}

export function buildEmulator(): void {
  sh('cargo', ['build', '--release', '--quiet', '--manifest-path', join(WAN, 'emulator', 'Cargo.toml')]);
}

/** The emulator's built-in scenarios, by name. */
export function scenarioPaths(): Map<string, ScenarioPath> {
  const all = JSON.parse(sh(EMULATOR, ['scenarios'])) as ScenarioPath[];
  return new Map(all.map((s) => [s.name, s]));
}

export function namespacesUp(): void {
  sh('bash', [join(WAN, 'netns.sh'), 'up', NS_A, NS_B]);
}

/** Stops the emulator and everything still running inside the namespaces, then removes them. */
export function namespacesDown(): void {
  sh('bash', [join(WAN, 'netns.sh'), 'down', NS_A, NS_B]);
}

/**
 * Runs `f` while the emulator serves `scenario` between the namespaces; `flags` go to the emulator
 * after the scenario and override it (`['--rate-trace', file]`, say). Resolves with `f`'s result and
 * what the emulator printed on stdout meanwhile (its `start` line with the resolved configuration).
 */
export async function withEmulator<T>(
  scenario: string,
  f: () => Promise<T>,
  flags: string[] = [],
): Promise<{ result: T; emulator: string }> {
  const statsFile = join(tmpdir(), `dwcp-wanem-${NS_A}-${scenario}.json`);
  const emu = spawn(
    EMULATOR,
    ['--ns-a', NS_A, '--ns-b', NS_B, '--scenario', scenario, '--stats-file', statsFile, ...flags],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  let emuOut = '';
  emu.stdout?.on('data', (d: Buffer) => {
    emuOut += d.toString();
  });
  try {
    await waitForPath(NS_A, ADDR_B, emu).catch((e: Error) => {
      throw new Error(`emulator for ${scenario} did not come up: ${e.message}`);
    });
    return { result: await f(), emulator: emuOut };
  } finally {
    emu.kill('SIGTERM');
    await exited(emu);
    emuOut = emuOut.trim().split('\n').at(-1) ?? '';
  }
}
