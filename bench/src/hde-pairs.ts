/**
 * Repeat migrations for bench:hde: pairs of real migration streams of one running test guest,
 * taken some seconds apart (bench/datasets/capture-qemu-stream-pair.sh). The destination holds
 * the first; what does the second cost on the wire with HDE's CDC and page modes, against
 * `zstd -3 --patch-from=first second` and plain zstd -3? Page mode is also decoded through a
 * chunk store, with the HELD list, and compared byte for byte.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { type ChunkerParams, ChunkStore, HdeDecoder, HdeEncoder } from '@novacron/hde';

const REPO = resolve(__dirname, '..', '..');
const PIECE = 4 * 2 ** 20;
const LEVEL = 3;

export interface PairSpec {
  name: string;
  guestArgs: string;
  memMib: number;
  gapS: number;
}

export const PAIRS: PairSpec[] = [
  { name: 'default', guestArgs: '', memMib: 256, gapS: 10 },
  {
    name: 'fill128-dirty512',
    guestArgs: 'dwcp.fill_mib=128 dwcp.dirty_kib_per_s=512',
    memMib: 256,
    gapS: 10,
  },
];

export interface PairRow {
  pair: string;
  what: string;
  firstBytes: number;
  secondBytes: number;
  encodeSeconds?: number;
}

export interface PairResult {
  spec: PairSpec;
  firstRaw: number;
  secondRaw: number;
  rows: PairRow[];
  pagesRoundTrip: string;
}

function capture(spec: PairSpec): [string, string] {
  const dir = join(REPO, '.dwcp', 'bench');
  const a = join(dir, `pair-${spec.name}-a.bin`);
  const b = join(dir, `pair-${spec.name}-b.bin`);
  if (!existsSync(a) || !existsSync(b)) {
    process.stderr.write(`capturing stream pair '${spec.name}' (${spec.gapS} s apart)...\n`);
    execFileSync(
      'bash',
      [
        join(REPO, 'bench', 'datasets', 'capture-qemu-stream-pair.sh'),
        a,
        b,
        String(spec.memMib),
        String(spec.gapS),
      ],
      { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, DWCP_GUEST_ARGS: spec.guestArgs } },
    );
  }
  return [a, b];
}

function zstdBytes(args: string[]): number {
  const out = join(mkdtempSync(join(tmpdir(), 'hde-zstd-')), 'out.zst');
  try {
    execFileSync('zstd', ['-q', '-f', ...args, '-o', out], { stdio: ['ignore', 'ignore', 'inherit'] });
    return statSync(out).size;
  } finally {
    rmSync(out, { force: true });
  }
}

function encode(enc: HdeEncoder, data: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < data.length; at += PIECE) out.push(enc.pushSync(data.subarray(at, at + PIECE)));
  out.push(enc.finishSync());
  return out;
}

const size = (bufs: Buffer[]) => bufs.reduce((n, b) => n + b.length, 0);

function hdePair(
  first: Buffer,
  second: Buffer,
  chunker: ChunkerParams,
  split: 'cdc' | 'pages',
  withReference: boolean,
): { w1: Buffer[]; w2: Buffer[]; held: string[]; seconds: number } {
  const t0 = process.hrtime.bigint();
  const options = { chunker, codec: { codec: 'zstd' as const, level: LEVEL }, split };
  const e1 = new HdeEncoder(options);
  const w1 = encode(e1, first);
  const held = e1.heldIds();
  const e2 = new HdeEncoder(options);
  e2.markPresent(held);
  if (withReference) e2.setReference(first);
  const w2 = encode(e2, second);
  return { w1, w2, held, seconds: Number(process.hrtime.bigint() - t0) / 1e9 };
}

/** Decodes both streams through one chunk store, as a destination would, and compares. */
function roundTrip(first: Buffer, second: Buffer, w1: Buffer[], w2: Buffer[], held: string[]): string {
  const dir = mkdtempSync(join(tmpdir(), 'hde-pair-store-'));
  try {
    const store = ChunkStore.open(dir, 4 * 2 ** 30);
    const check = (wire: Buffer[], want: Buffer, heldIds: string[]) => {
      const dec = new HdeDecoder(store);
      dec.setHeld(heldIds);
      const got = Buffer.concat(wire.map((w) => dec.pushSync(w)));
      dec.finish();
      return got.equals(want);
    };
    const ok = check(w1, first, []) && check(w2, second, held);
    return ok ? 'both streams rebuilt byte for byte through a chunk store' : '**rebuilt streams differ**';
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function measurePairs(): PairResult[] {
  const results: PairResult[] = [];
  for (const spec of PAIRS) {
    const [a, b] = capture(spec);
    const first = readFileSync(a);
    const second = readFileSync(b);
    const rows: PairRow[] = [];
    const cdc64: ChunkerParams = { minSize: 16384, avgSize: 65536, maxSize: 262144, normalization: 1 };
    const modes: Array<[string, ChunkerParams, 'cdc' | 'pages', boolean]> = [
      ['HDE cdc 16/64/256 KiB (before)', cdc64, 'cdc', false],
      [
        'HDE cdc 2/4/16 KiB',
        { minSize: 2048, avgSize: 4096, maxSize: 16384, normalization: 1 },
        'cdc',
        false,
      ],
      ['HDE pages (format 2), HELD list', cdc64, 'pages', false],
      ['HDE pages + page deltas against the previous image', cdc64, 'pages', true],
    ];
    let pagesRoundTrip = '';
    for (const [what, chunker, split, withReference] of modes) {
      const r = hdePair(first, second, chunker, split, withReference);
      rows.push({
        pair: spec.name,
        what: `${what}, zstd ${LEVEL}`,
        firstBytes: size(r.w1),
        secondBytes: size(r.w2),
        encodeSeconds: r.seconds,
      });
      process.stderr.write(`${spec.name} ${what}: first ${size(r.w1)} second ${size(r.w2)}\n`);
      if (split === 'pages') {
        const ok = roundTrip(first, second, r.w1, r.w2, r.held);
        pagesRoundTrip += `${pagesRoundTrip ? '; ' : ''}${withReference ? 'with deltas' : 'HELD list'}: ${ok}`;
      }
    }
    const plainFirst = zstdBytes(['-3', a]);
    rows.push({
      pair: spec.name,
      what: 'zstd -3 (each stream alone)',
      firstBytes: plainFirst,
      secondBytes: zstdBytes(['-3', b]),
    });
    rows.push({
      pair: spec.name,
      what: 'zstd -3 --patch-from=first second',
      firstBytes: plainFirst,
      secondBytes: zstdBytes(['-3', `--patch-from=${a}`, b]),
    });
    results.push({ spec, firstRaw: first.length, secondRaw: second.length, rows, pagesRoundTrip });
  }
  return results;
}

const mb = (n: number) => (n / 1e6).toFixed(2);

export function pairsMarkdown(results: PairResult[]): string[] {
  const lines = [
    '## Repeat migrations: stream pairs of one guest (issue 12)',
    '',
    'Each pair is two real QEMU migration streams (precopy to a file, `cont`, the guest runs on) of one',
    "running test guest, taken the stated seconds apart; the destination holds the first stream's chunks.",
    "HDE encodes the first alone, then the second with the first's units declared present (in page mode",
    'as the ordered HELD list). MB = 10^6 bytes on the wire, framing included.',
    'The test guest fills tmpfs with random data and rewrites it with random data in 64 KiB steps, so',
    'its changed pages are incompressible by construction: no method can go below the rewritten bytes.',
    '',
    '| pair | method | first stream MB | second stream MB | encode s (both) |',
    '|---|---|---:|---:|---:|',
  ];
  for (const r of results) {
    lines.splice(
      lines.length,
      0,
      ...r.rows.map(
        (row) =>
          `| ${row.pair} | ${row.what} | ${mb(row.firstBytes)} | ${mb(row.secondBytes)} | ${row.encodeSeconds === undefined ? '' : row.encodeSeconds.toFixed(2)} |`,
      ),
    );
  }
  lines.push('');
  for (const r of results) {
    lines.push(
      `- **${r.spec.name}**: ${r.spec.memMib} MiB guest, guest args \`${r.spec.guestArgs || '(defaults: fill 64 MiB, dirty 2048 KiB/s)'}\`, ${r.spec.gapS} s apart; raw streams ${mb(r.firstRaw)} and ${mb(r.secondRaw)} MB; page mode: ${r.pagesRoundTrip}`,
    );
  }
  lines.push('', '### Targets (issue 12 item 4, bench:hde part)', '');
  for (const r of results) {
    const get = (prefix: string) => r.rows.find((row) => row.what.startsWith(prefix));
    const held = get('HDE pages (format 2)');
    const pages = get('HDE pages + page deltas');
    const before = get('HDE cdc 16/64');
    const patch = get('zstd -3 --patch-from');
    const plain = get('zstd -3 (each');
    if (!pages || !held || !patch || !before || !plain) continue;
    const verdict = (bytes: number) => (bytes <= patch.secondBytes ? 'met' : '**missed**');
    const vs = (bytes: number) => `${((bytes / patch.secondBytes - 1) * 100).toFixed(1)} %`;
    lines.push(
      `- ${r.spec.name}: repeat costs no more than zstd -3 --patch-from (${mb(patch.secondBytes)} MB): HDE pages + deltas ${mb(pages.secondBytes)} MB (${vs(pages.secondBytes)}): ${verdict(pages.secondBytes)}; HELD list alone (the source holds no previous image) ${mb(held.secondBytes)} MB (${vs(held.secondBytes)}): ${verdict(held.secondBytes)}; before: ${mb(before.secondBytes)} MB (${vs(before.secondBytes)})`,
      `- ${r.spec.name}: first stream with HDE pages ${mb(pages.firstBytes)} MB vs zstd -3 alone ${mb(plain.firstBytes)} MB (${((pages.firstBytes / plain.firstBytes - 1) * 100).toFixed(1)} %)`,
    );
  }
  return lines;
}
