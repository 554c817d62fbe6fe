/** Both namespaces' wan0 byte counters, sampled the same way for every method bench:migrate runs. */
import { readFileSync } from 'node:fs';
import { WAN_IF } from './wan-path';

/** What a namespace's wan0 has carried so far, read from /proc/PID/net/dev of a process inside it. */
export interface IfCounters {
  rx: number;
  tx: number;
}

function readCounters(pid: number): IfCounters {
  const line = readFileSync(`/proc/${pid}/net/dev`, 'utf8')
    .split('\n')
    .find((l) => l.trim().startsWith(`${WAN_IF}:`));
  if (line === undefined) throw new Error(`no ${WAN_IF} in the namespace of pid ${pid}`);
  const f = (line.split(':')[1] ?? '').trim().split(/\s+/).map(Number);
  return { rx: f[0] ?? Number.NaN, tx: f[8] ?? Number.NaN };
}

/**
 * A 100 ms interval in which dwcp-a sent less than this is idle: the cluster's own Raft and gossip
 * traffic (a few KB/s) crosses the path all the time, and must not stretch the transfer's window.
 */
const IDLE_BYTES = 50_000;

/** Both namespaces' counters every 100 ms. */
export class CounterSampler {
  readonly samples: { t: number; a: IfCounters; b: IfCounters }[] = [];
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly pidA: number,
    private readonly pidB: number,
  ) {
    this.sample();
    this.timer = setInterval(() => this.sample(), 100);
  }

  private sample(): void {
    this.samples.push({ t: Date.now(), a: readCounters(this.pidA), b: readCounters(this.pidB) });
  }

  stop(): void {
    clearInterval(this.timer);
    this.sample();
  }

  /**
   * Bytes dwcp-a sent into the path up to `untilMs` (the destination's resume), and the time
   * from the last sample before the first busy interval to the end of the last one.
   */
  measure(
    untilMs: number,
    stopAtMs: number | undefined,
  ): { wire: number; acks: number; delivered: number; transferS: number; afterStop?: number } {
    const s = this.samples;
    const first = s[0];
    if (first === undefined) throw new Error('no counter samples');
    let end = s.findIndex((x) => x.t > untilMs + 200);
    if (end < 0) end = s.length - 1;
    const last = s[end] ?? first;
    const moved = (i: number) => (s[i]?.a.tx ?? 0) - (s[i - 1]?.a.tx ?? 0) >= IDLE_BYTES;
    let begin = 1;
    while (begin < end && !moved(begin)) begin++;
    let lastMove = begin;
    for (let i = begin + 1; i <= end; i++) if (moved(i)) lastMove = i;
    const from = s[Math.max(0, begin - 1)]?.t ?? first.t;
    // The last reading before the source stopped: what crossed after it was still in the pipe.
    const atStop = stopAtMs === undefined ? undefined : [...s].reverse().find((x) => x.t <= stopAtMs);
    return {
      wire: last.a.tx - first.a.tx,
      acks: last.a.rx - first.a.rx,
      delivered: last.b.rx - first.b.rx,
      transferS: ((s[lastMove]?.t ?? from) - from) / 1000,
      ...(atStop === undefined ? {} : { afterStop: last.a.tx - atStop.a.tx }),
    };
  }
}
