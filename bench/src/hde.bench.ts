/**
 * `npm run bench:hde`: native vs pure-JS HDE on chunking, hashing, compression and the full
 * encode pipeline, on random and VM-like data. Native calls run on the JS thread (one core) with
 * whole buffers, so the pipeline number includes every crossing of the addon boundary.
 * Writes docs/benchmarks/hde.md and hde.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { blake3 } from '@noble/hashes/blake3';
import {
  type ChunkerParams,
  chunkIdSync,
  chunkLengthsSync,
  encodeFrameSync,
  encodeJsFrame,
  HdeDecoder,
  HdeEncoder,
  JsHdeEncoder,
  jsChunkLengths,
} from '@novacron/hde';
import { Bench } from 'tinybench';
import { type Dataset, loadDatasets } from './datasets';
import { measurePairs, type PairResult, pairsMarkdown } from './hde-pairs';
import { machineInfo, machineMarkdown } from './machine';

const MiB = 2 ** 20;
const PARAMS: ChunkerParams = {
  minSize: 16 * 1024,
  avgSize: 64 * 1024,
  maxSize: 256 * 1024,
  normalization: 1,
};
const PIECE = 4 * MiB;
/** Threads for the multi-core rows: the cores here, at most 8 (what a node's pipeline uses). */
const CORES = Math.min(availableParallelism(), 8);

function encodeNative(data: Buffer, threads: number, level = 1): Buffer[] {
  const enc = new HdeEncoder({ chunker: PARAMS, codec: { codec: 'zstd', level }, threads });
  const out = pieces(data, PIECE).map((p) => enc.pushSync(p));
  out.push(enc.finishSync());
  return out;
}

function decodeNative(stream: Buffer, threads: number): number {
  const dec = new HdeDecoder();
  dec.setThreads(threads);
  let n = 0;
  for (const p of pieces(stream, PIECE)) n += dec.pushSync(p).length;
  dec.finish();
  return n;
}

interface Row {
  dataset: string;
  stage: string;
  path: 'native' | 'js';
  what: string;
  mbPerS: number;
  rmePct: number;
  samples: number;
  outputRatio?: number;
}

function pieces(data: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < data.length; at += size) out.push(data.subarray(at, at + size));
  return out;
}

/** Each task processes the whole dataset once; returns the bytes it produced (for ratios). */
function tasks(
  ds: Dataset,
): Array<{ stage: string; path: 'native' | 'js'; what: string; run: () => number }> {
  const data = ds.data;
  const mib = pieces(data, MiB);
  const stream = Buffer.concat(encodeNative(data, 1));
  return [
    {
      stage: 'chunking',
      path: 'native',
      what: 'FastCDC 2020 (fastcdc crate)',
      run: () => chunkLengthsSync(data, PARAMS).length,
    },
    {
      stage: 'chunking',
      path: 'js',
      what: 'FastCDC 2020 (TS port)',
      run: () => jsChunkLengths(data, PARAMS).length,
    },
    {
      stage: 'hashing',
      path: 'native',
      what: 'BLAKE3 (blake3 crate), 1 MiB calls',
      run: () => mib.map(chunkIdSync).length,
    },
    {
      stage: 'hashing',
      path: 'js',
      what: 'BLAKE3 (@noble/hashes), 1 MiB calls',
      run: () => mib.map((p) => blake3(p)).length,
    },
    {
      stage: 'compression',
      path: 'native',
      what: 'zstd 1, 1 MiB frames',
      run: () => mib.reduce((n, p) => n + encodeFrameSync(p, { codec: 'zstd', level: 1 }).length, 0),
    },
    {
      stage: 'compression',
      path: 'native',
      what: 'lz4, 1 MiB frames',
      run: () => mib.reduce((n, p) => n + encodeFrameSync(p, { codec: 'lz4' }).length, 0),
    },
    {
      stage: 'compression',
      path: 'native',
      what: 'deflate 1 (miniz_oxide), 1 MiB frames',
      run: () => mib.reduce((n, p) => n + encodeFrameSync(p, { codec: 'deflate', level: 1 }).length, 0),
    },
    {
      stage: 'compression',
      path: 'js',
      what: 'deflate 1 (node:zlib), 1 MiB frames',
      run: () => mib.reduce((n, p) => n + encodeJsFrame(p, { codec: 'deflate', level: 1 }).length, 0),
    },
    ...([1, -1] as const).map((level) => ({
      stage: 'encode pipeline',
      path: 'native' as const,
      what: `chunk+BLAKE3+dedup+zstd ${level}, 4 MiB pushes`,
      run: () => encodeNative(data, 1, level).reduce((n, p) => n + p.length, 0),
    })),
    ...(CORES > 1
      ? [
          {
            stage: 'encode pipeline',
            path: 'native' as const,
            what: `chunk+BLAKE3+dedup+zstd 1, 4 MiB pushes, ${CORES} threads`,
            run: () => encodeNative(data, CORES).reduce((n, p) => n + p.length, 0),
          },
        ]
      : []),
    ...[...new Set([1, CORES])].map((threads) => ({
      stage: 'decode pipeline',
      path: 'native' as const,
      what: `parse+zstd 1 decode+BLAKE3 verify, 4 MiB pushes, ${threads} thread${threads > 1 ? 's' : ''}`,
      run: () => decodeNative(stream, threads),
    })),
    {
      stage: 'encode pipeline',
      path: 'js',
      what: 'chunk+BLAKE3+dedup+deflate 1, 4 MiB pushes',
      run: () => {
        const enc = new JsHdeEncoder({ chunker: PARAMS, codec: { codec: 'deflate', level: 1 } });
        let n = 0;
        for (const p of pieces(data, PIECE)) n += enc.push(p).length;
        return n + enc.finish().length;
      },
    },
  ];
}

async function measure(ds: Dataset): Promise<Row[]> {
  const rows: Row[] = [];
  for (const t of tasks(ds)) {
    let produced = 0;
    const bench = new Bench({ time: 3000, iterations: 3, warmupIterations: 1 });
    bench.add(`${t.path}: ${t.stage}`, () => {
      produced = t.run();
    });
    await bench.run();
    const result = bench.tasks[0]?.result as
      | { latency?: { mean: number; rme: number; samplesCount?: number } }
      | undefined;
    const latency = result?.latency;
    if (!latency) throw new Error(`${t.path}: ${t.stage} produced no result`);
    const row: Row = {
      dataset: ds.name,
      stage: t.stage,
      path: t.path,
      what: t.what,
      mbPerS: ds.data.length / 1e6 / (latency.mean / 1000),
      rmePct: latency.rme,
      samples: bench.tasks[0]?.runs ?? 0,
    };
    if (t.stage === 'compression' || t.stage === 'encode pipeline')
      row.outputRatio = produced / ds.data.length;
    rows.push(row);
    process.stderr.write(
      `${ds.name.padEnd(8)} ${t.path.padEnd(6)} ${t.stage.padEnd(16)} ${row.mbPerS.toFixed(0).padStart(6)} MB/s  ${t.what}\n`,
    );
  }
  return rows;
}

function ratioOf(rows: Row[], dataset: string, stage: string): number {
  const native = rows.find((r) => r.dataset === dataset && r.stage === stage && r.path === 'native');
  const js = rows.find((r) => r.dataset === dataset && r.stage === stage && r.path === 'js');
  return native && js ? native.mbPerS / js.mbPerS : Number.NaN;
}

function markdown(
  rows: Row[],
  datasets: Dataset[],
  pairs: PairResult[],
  machine: ReturnType<typeof machineInfo>,
  load: { before: number[]; after: number[] },
): string {
  const lines = [
    '# HDE benchmark: native (Rust via napi-rs) vs pure JS',
    '',
    'Generated by `npm run bench:hde` (bench/src/hde.bench.ts). Do not edit by hand; rerun it.',
    '',
    machineMarkdown(machine),
    `- load average (1, 5, 15 min) before the run ${load.before.map((l) => l.toFixed(2)).join(', ')}, after ${load.after.map((l) => l.toFixed(2)).join(', ')}; the machine is shared with other work, which these show`,
    `- every task runs on the JS thread (one core), except the rows that name threads: those spread HDE's per-chunk work over ${CORES} threads of the addon; MB/s = 10^6 bytes of raw data per second;`,
    '  each row is the mean of ≥3 timed passes over the whole dataset (tinybench), ± is the relative margin of error',
    '- chunker: FastCDC 2020, min/avg/max 16/64/256 KiB, normalization 1',
    '',
    '## Datasets',
    '',
    ...datasets.map((d) => `- **${d.name}**: ${d.source}`),
    '',
    '## Results',
    '',
    '| dataset | stage | path | what | MB/s | ± % | output/input |',
    '|---|---|---|---|---:|---:|---:|',
    ...rows.map(
      (r) =>
        `| ${r.dataset} | ${r.stage} | ${r.path} | ${r.what} | ${r.mbPerS.toFixed(0)} | ${r.rmePct.toFixed(1)} | ${
          r.outputRatio === undefined ? '' : r.outputRatio.toFixed(3)
        } |`,
    ),
    '',
    '## Native / JS ratios (same run)',
    '',
    '| dataset | chunking | hashing | compression (zstd 1 vs deflate 1) | encode pipeline (zstd 1 vs deflate 1) |',
    '|---|---:|---:|---:|---:|',
    ...datasets.map((d) => {
      const zstd = rows.find((r) => r.dataset === d.name && r.what.startsWith('zstd 1'));
      const deflate = rows.find((r) => r.dataset === d.name && r.path === 'js' && r.stage === 'compression');
      const comp = zstd && deflate ? zstd.mbPerS / deflate.mbPerS : Number.NaN;
      return `| ${d.name} | ${ratioOf(rows, d.name, 'chunking').toFixed(1)}x | ${ratioOf(rows, d.name, 'hashing').toFixed(1)}x | ${comp.toFixed(1)}x | ${ratioOf(rows, d.name, 'encode pipeline').toFixed(1)}x |`;
    }),
    '',
    '## Targets (issue 2)',
    '',
    ...targets(rows),
    '',
    ...pairsMarkdown(pairs),
    '',
  ];
  return lines.join('\n');
}

function targets(rows: Row[]): string[] {
  const get = (dataset: string, stage: string, path: string) =>
    rows.find((r) => r.dataset === dataset && r.stage === stage && r.path === path)?.mbPerS ?? Number.NaN;
  const chunkRandom = get('random', 'chunking', 'native');
  const chunkVm = get('vm-like', 'chunking', 'native');
  const chunkRatio = Math.min(ratioOf(rows, 'random', 'chunking'), ratioOf(rows, 'vm-like', 'chunking'));
  const pipes = rows.filter(
    (r) => r.dataset === 'vm-like' && r.stage === 'encode pipeline' && r.path === 'native',
  );
  const pipe = Math.max(...pipes.map((r) => r.mbPerS));
  const verdict = (ok: boolean) => (ok ? 'met' : '**missed**');
  const speedUp = (stage: string) => {
    const one = rows.find(
      (r) =>
        r.dataset === 'vm-like' &&
        r.stage === stage &&
        r.what.includes('zstd 1') &&
        !r.what.includes('threads'),
    );
    const many = rows.find(
      (r) => r.dataset === 'vm-like' && r.stage === stage && r.what.includes(`${CORES} threads`),
    );
    return one && many ? many.mbPerS / one.mbPerS : Number.NaN;
  };
  const [encodeUp, decodeUp] = [speedUp('encode pipeline'), speedUp('decode pipeline')];
  const multiCore =
    CORES > 1
      ? [
          `- HDE encode and decode on more than one core (issue 12): on ${CORES} threads, vm-like data, encode ${encodeUp.toFixed(2)}× and decode ${decodeUp.toFixed(2)}× one thread's MB/s; target ≥ ${(0.75 * CORES).toFixed(2)}× (0.75 per core) each: ${verdict(Math.min(encodeUp, decodeUp) >= 0.75 * CORES)}`,
        ]
      : ['- HDE on more than one core: not measured, this machine has one core'];
  return [
    ...multiCore,
    `- native chunking ≥ 1000 MB/s on one core: random ${chunkRandom.toFixed(0)}, vm-like ${chunkVm.toFixed(0)} MB/s: ${verdict(Math.min(chunkRandom, chunkVm) >= 1000)}`,
    `- native chunking ≥ 10x the JS chunker: worst ratio ${chunkRatio.toFixed(1)}x: ${verdict(chunkRatio >= 10)}`,
    `- native encode pipeline (chunk, BLAKE3, zstd fast level) ≥ 300 MB/s on vm-like data, through the addon: ${pipes
      .map((r) => `${r.what.split(',')[0]} ${r.mbPerS.toFixed(0)} MB/s`)
      .join('; ')}: ${verdict(pipe >= 300)}`,
  ];
}

async function main(): Promise<void> {
  const sizeMib = Number(process.env.DWCP_BENCH_MIB ?? 64);
  const before = loadavg();
  const datasets = loadDatasets(sizeMib);
  const rows: Row[] = [];
  for (const ds of datasets) rows.push(...(await measure(ds)));
  const pairs = measurePairs();
  const after = loadavg();
  const machine = machineInfo();
  const outDir = resolve(__dirname, '..', '..', 'docs', 'benchmarks');
  mkdirSync(outDir, { recursive: true });
  const md = markdown(rows, datasets, pairs, machine, { before, after });
  writeFileSync(join(outDir, 'hde.md'), md);
  writeFileSync(
    join(outDir, 'hde.json'),
    `${JSON.stringify({ machine, load: { before, after }, datasets: datasets.map((d) => ({ name: d.name, source: d.source, bytes: d.data.length })), rows, pairs }, null, 2)}\n`,
  );
  process.stdout.write(`${md}\nwrote ${join(outDir, 'hde.md')}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:hde failed: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
