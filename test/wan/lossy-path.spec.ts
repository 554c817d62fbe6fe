/**
 * AMST over a real lossy path: two network namespaces joined by bench/wan's TUN emulator with
 * delay and packet loss. Needs root (namespaces, TUN), as CI has; skipped with a reason otherwise.
 */
import { execFileSync, spawn } from 'node:child_process';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { syntheticBlake3 } from '@novacron/native';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writePeerIdentities } from '../../bench/src/peer-identities';
import { waitForPath } from '../../bench/src/wan-path';

const REPO = resolve(__dirname, '..', '..');
const WAN = join(REPO, 'bench', 'wan');
const EMULATOR = join(WAN, 'emulator', 'target', 'release', 'dwcp-wanem');
const PEER = join(REPO, 'bench', 'dist', 'wan-peer.js');
const NS = ['dwcp-test-a', 'dwcp-test-b'] as const;

function canUseNamespaces(): string | null {
  if (process.getuid?.() !== 0) return 'not root';
  try {
    execFileSync('ip', ['netns', 'list'], { stdio: 'ignore' });
    return null;
  } catch {
    return 'no `ip netns`';
  }
}

const skip = canUseNamespaces();

describe.skipIf(skip !== null)(`AMST through the WAN emulator${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let emulator: ReturnType<typeof spawn> | undefined;
  let ids = '';
  let finalStats = '';

  beforeAll(async () => {
    execFileSync(
      'cargo',
      ['build', '--release', '--quiet', '--manifest-path', join(WAN, 'emulator', 'Cargo.toml')],
      {
        stdio: 'inherit',
      },
    );
    execFileSync('bash', [join(WAN, 'netns.sh'), 'up', ...NS], { stdio: 'ignore' });
    ids = writePeerIdentities('lossy');
    // 20 ms each way, 2 % loss each way, 50 Mbit/s: a harsh path that still finishes quickly.
    const args = [
      '--ns-a',
      NS[0],
      '--ns-b',
      NS[1],
      '--delay-ms',
      '20',
      '--loss',
      '0.02',
      '--rate-mbit',
      '50',
    ];
    emulator = spawn(EMULATOR, args, { stdio: ['ignore', 'pipe', 'ignore'] });
    emulator.stdout?.on('data', (d: Buffer) => {
      finalStats = d.toString().trim().split('\n').at(-1) ?? finalStats;
    });
    await waitForPath(NS[0], '10.77.0.2', emulator).catch((e: Error) => {
      throw new Error(`the emulated path never came up: ${e.message}`);
    });
  }, 300_000);

  afterAll(async () => {
    emulator?.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 300));
    execFileSync('bash', [join(WAN, 'netns.sh'), 'down', ...NS], { stdio: 'ignore' });
  });

  async function transfer(kind: 'tcp' | 'quic', port: number, bytes: number): Promise<void> {
    const run = (ns: string, args: string[]) =>
      spawn('ip', ['netns', 'exec', ns, process.execPath, PEER, ...args], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
    const receiver = run(NS[1], [
      'receive',
      '--kind',
      kind,
      '--port',
      String(port),
      '--identity',
      join(ids, 'node-b'),
    ]);
    const rx = createInterface({ input: receiver.stdout as NodeJS.ReadableStream })[Symbol.asyncIterator]();
    await rx.next(); // listening
    const sender = run(NS[0], [
      'send',
      '--kind',
      kind,
      '--host',
      '10.77.0.2',
      '--port',
      String(port),
      '--identity',
      join(ids, 'node-a'),
      '--bytes',
      String(bytes),
      '--seed',
      String(port),
      '--streams',
      '4',
    ]);
    const sent = JSON.parse(
      String(
        (
          await createInterface({ input: sender.stdout as NodeJS.ReadableStream })
            [Symbol.asyncIterator]()
            .next()
        ).value,
      ),
    ) as Record<string, unknown>;
    const got = JSON.parse(String((await rx.next()).value)) as Record<string, unknown>;
    expect(sent.error).toBeUndefined();
    expect(got.complete).toBe(true);
    expect(got.bytes).toBe(bytes);
    expect(got.blake3).toBe(await syntheticBlake3(bytes, port));
  }

  it.each(['tcp', 'quic'] as const)(
    'delivers the exact stream over %s despite 2 percent loss each way',
    async (kind) => {
      await transfer(kind, kind === 'tcp' ? 23001 : 23002, 12 << 20);
    },
    120_000,
  );

  it('the emulator really dropped packets', async () => {
    emulator?.kill('SIGTERM');
    await new Promise((r) => emulator?.once('exit', r));
    const stats = JSON.parse(finalStats) as {
      a_to_b?: { lost_packets: number };
      b_to_a?: { lost_packets: number };
    };
    expect((stats.a_to_b?.lost_packets ?? 0) + (stats.b_to_a?.lost_packets ?? 0)).toBeGreaterThan(50);
  });
});
