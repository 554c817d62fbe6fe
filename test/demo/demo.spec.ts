/**
 * `npm run demo` as a new user runs it: `dwcp demo` with its defaults (on CI, as root with QEMU:
 * real QEMU over the emulated internet) must end with the report and exit 0; and with the simulated
 * hypervisor on loopback, as on a machine without QEMU, it must say so and still migrate.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const CLI = resolve(__dirname, '..', '..', 'apps', 'cli', 'dist', 'main.js');

function demo(args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((res) => {
    const child = spawn(process.execPath, [CLI, 'demo', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.once('exit', (code) => res({ code, out }));
  });
}

/** The report row of `what`: its cells, split on runs of spaces. */
function row(out: string, what: string): string[] {
  const line = out.split('\n').find((l) => l.startsWith(what));
  if (line === undefined) throw new Error(`no report row ${what} in:\n${out}`);
  return line
    .slice(what.length)
    .trim()
    .split(/\s{2,}/);
}

describe('dwcp demo', () => {
  const dirs: string[] = [];
  const dataDir = () => {
    const d = mkdtempSync(join(tmpdir(), 'dwcp-demo-test-'));
    dirs.push(d);
    return d;
  };
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('with its defaults ends with the report: both migrations done, the second sending less', async () => {
    const { code, out } = await demo(['--data-dir', dataDir()]);
    console.info(out.split('\n== report')[1] ?? out.slice(-3000));
    expect(code, out.slice(-3000)).toBe(0);
    expect(out).toContain('== report');
    const first = row(out, 'DWCP, first VM');
    const second = row(out, 'DWCP, second VM (same image)');
    expect(first[0]).toBe('done');
    expect(second[0]).toBe('done');
    expect(out).toMatch(/second VM: \d+ % of the first one's bytes on the wire/);
    expect(out).toMatch(/runs on n3: heartbeat \d+/);
    if (out.includes('hypervisor: real QEMU')) {
      expect(out).toMatch(/guest integrity checks: ok/);
      expect(out).not.toMatch(/integrity checks: .*FAIL/);
      // Every row's pause is the guest's real one (STOP → RESUME); QEMU's own figure only beside it.
      expect(out).toMatch(/migration\s+result\s+time\s+real pause\s+QEMU's downtime/);
      const qemu = row(out, 'QEMU, one TCP connection');
      expect(qemu[0]).toBe('done');
      expect(qemu[2]).toMatch(/^\d+(\.\d+)? (ms|s)$/);
      expect(row(out, 'DWCP, first VM')[2]).toMatch(/^\d+(\.\d+)? (ms|s)$/);
    }
  }, 600_000);

  it('without QEMU (--hypervisor simulated --link loopback) says so plainly and still migrates', async () => {
    const { code, out } = await demo([
      '--hypervisor',
      'simulated',
      '--link',
      'loopback',
      '--data-dir',
      dataDir(),
    ]);
    expect(code, out.slice(-3000)).toBe(0);
    expect(out).toContain('hypervisor: SIMULATED');
    expect(out).toContain('link to node 3: plain loopback, NOT an emulated WAN');
    expect(out).toContain('QEMU alone: not possible: QEMU does not run here');
    expect(row(out, 'DWCP, first VM')[0]).toBe('done');
    expect(row(out, 'DWCP, second VM (same image)')[0]).toBe('done');
  }, 300_000);
});
