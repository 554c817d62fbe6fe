/**
 * A JS sender and receiver over a simulated network on a virtual clock (port of
 * `native/crates/amst/tests/sim.rs`): per-connection rate, delay and TCP-like loss (a lost segment
 * holds the connection's in-order delivery back by a retransmission), an optional shared
 * bottleneck, and connections that die. No sleeps.
 */
import { describe, expect, it } from 'vitest';
import { type JsAdaptConfig, JsStreamCountController } from './adapt';
import type { ConnId } from './conn';
import { AmstError } from './error';
import { encodeAck, parseFrame } from './frame';
import { JsReceiver, type JsReceiverConfig } from './receiver';
import { JsSender, type JsSenderConfig } from './sender';

const MiB = 1024 * 1024;

/** xorshift64, the simulation's loss dice; the same sequence as `sim.rs`, so runs can be compared. */
class LossRng {
  private state: bigint;
  constructor(seed: bigint) {
    this.state = seed;
  }
  unit(): number {
    let x = this.state;
    x ^= (x << 13n) & 0xffff_ffff_ffff_ffffn;
    x ^= x >> 7n;
    x ^= (x << 17n) & 0xffff_ffff_ffff_ffffn;
    this.state = x;
    return Number(x >> 11n) / 2 ** 53;
  }
}

/** xorshift32, for test data. */
class Rng {
  constructor(private state: number) {}
  next(): number {
    let x = this.state;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.state = x >>> 0;
    return this.state;
  }
  bytes(n: number): Buffer {
    const words = new Uint32Array(Math.ceil(n / 4));
    for (let i = 0; i < words.length; i++) words[i] = this.next();
    return Buffer.from(words.buffer, 0, n);
  }
}

interface LinkSpec {
  /** Bytes per second. */
  rate: number;
  delayMs: number;
  loss: number;
}

interface Link {
  spec: LinkSpec;
  busyUntil: number;
  lastArrival: number;
  /** Dead links drop everything. */
  dead: boolean;
}

/** `bottleneck`: leaves its connection's queue and enters the shared bottleneck (FIFO by arrival). */
type Hop = { to: 'bottleneck' | 'receiver' | 'sender'; conn: ConnId; bytes: Buffer };

/** A binary min-heap of (time, tie-break id). */
class EventQueue {
  private readonly heap: [number, number][] = [];
  push(e: [number, number]): void {
    const h = this.heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const [pi, ii] = [h[parent], h[i]];
      if (pi === undefined || ii === undefined || !less(ii, pi)) break;
      h[parent] = ii;
      h[i] = pi;
      i = parent;
    }
  }
  peek(): [number, number] | undefined {
    return this.heap[0];
  }
  pop(): void {
    const h = this.heap;
    const last = h.pop();
    if (last === undefined || h.length === 0) return;
    h[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      const hm = () => h[m] ?? last;
      const hl = h[l];
      const hr = h[r];
      if (hl !== undefined && less(hl, hm())) m = l;
      if (hr !== undefined && less(hr, hm())) m = r;
      if (m === i) return;
      const hi = h[i] ?? last;
      h[i] = hm();
      h[m] = hi;
      i = m;
    }
  }
}

function less(a: [number, number], b: [number, number]): boolean {
  return a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]);
}

class Net {
  now = 0;
  readonly links = new Map<ConnId, Link>();
  private readonly bottleneck: { rate: number; busy: number } | null;
  private readonly queue = new EventQueue();
  private readonly hops = new Map<number, Hop>();
  private nextHop = 0;
  private readonly rng: LossRng;

  constructor(bottleneck: number | null, lossSeed: bigint) {
    this.rng = new LossRng(lossSeed);
    this.bottleneck = bottleneck === null ? null : { rate: bottleneck, busy: 0 };
  }

  add(id: ConnId, spec: LinkSpec): void {
    this.links.set(id, { spec, busyUntil: this.now, lastArrival: this.now, dead: false });
  }

  private schedule(at: number, hop: Hop): void {
    this.queue.push([at, this.nextHop]);
    this.hops.set(this.nextHop, hop);
    this.nextHop += 1;
  }

  sendData(conn: ConnId, bytes: Buffer): void {
    const lost = this.rng.unit();
    const link = this.links.get(conn);
    if (link === undefined || link.dead) return;
    const depart = Math.max(link.busyUntil, this.now) + (bytes.length / link.spec.rate) * 1000;
    link.busyUntil = depart;
    if (this.bottleneck !== null) this.schedule(depart, { to: 'bottleneck', conn, bytes });
    else this.propagate(conn, depart, bytes, lost);
  }

  throughBottleneck(conn: ConnId, bytes: Buffer): void {
    const lost = this.rng.unit();
    const b = this.bottleneck;
    if (b === null) return;
    const depart = Math.max(b.busy, this.now) + (bytes.length / b.rate) * 1000;
    b.busy = depart;
    this.propagate(conn, depart, bytes, lost);
  }

  private propagate(conn: ConnId, depart: number, bytes: Buffer, lost: number): void {
    const link = this.links.get(conn);
    if (link === undefined) return;
    let arrive = depart + link.spec.delayMs;
    // A lost segment costs a retransmission: about one RTT more, and TCP delivers in order.
    const segments = Math.ceil(bytes.length / 1448);
    if (lost < 1 - (1 - link.spec.loss) ** segments) arrive += link.spec.delayMs * 3;
    arrive = Math.max(arrive, link.lastArrival);
    link.lastArrival = arrive;
    this.schedule(arrive, { to: 'receiver', conn, bytes });
  }

  sendAck(conn: ConnId, bytes: Buffer): void {
    const link = this.links.get(conn);
    if (link === undefined || link.dead) return;
    this.schedule(this.now + link.spec.delayMs, { to: 'sender', conn, bytes });
  }

  nextTime(): number | undefined {
    return this.queue.peek()?.[0];
  }

  popDue(): Hop | null {
    for (;;) {
      const top = this.queue.peek();
      if (top === undefined || top[0] > this.now) return null;
      this.queue.pop();
      const hop = this.hops.get(top[1]);
      this.hops.delete(top[1]);
      if (hop === undefined) continue;
      // Whatever was on a link when it died never arrives.
      const link = this.links.get(hop.conn);
      if (link === undefined || link.dead) continue;
      return hop;
    }
  }
}

/** A fault injected at a time: `kill` the runtime sees; a `blackHole` nobody reports. */
type Fault = { atMs: number; kind: 'kill' | 'blackHole'; conn: ConnId };

interface Scenario {
  links: LinkSpec[];
  /** With a controller, links are opened and retired as it says; `links[0]` is the template. */
  adapt?: Partial<JsAdaptConfig>;
  bottleneck?: number;
  bytes?: number;
  faults?: Fault[];
  sender?: Partial<JsSenderConfig>;
  receiver?: Partial<JsReceiverConfig>;
  /** The consumer stops reading between these times (ms). */
  readerPause?: [number, number];
  limitMs?: number;
  /** Seed of the loss dice; `sim.rs`'s by default. */
  lossSeed?: bigint;
}

interface Run {
  input: Buffer;
  output: Buffer;
  elapsedMs: number;
  sender: JsSender;
  receiver: JsReceiver;
  failed: ConnId[];
  targets: number[];
}

function run(s: Scenario): Run {
  const input = new Rng(42).bytes(s.bytes ?? 16 * MiB);
  const limit = s.limitMs ?? 600_000;
  const net = new Net(s.bottleneck ?? null, s.lossSeed ?? 0x9e37_79b9_7f4a_7c15n);
  const sender = new JsSender(s.sender);
  const receiver = new JsReceiver(s.receiver);
  const controller = s.adapt === undefined ? null : new JsStreamCountController(s.adapt);
  let nextId = 0;
  const open = (spec: LinkSpec | undefined) => {
    if (spec === undefined) throw new Error('no link spec');
    const id = nextId++;
    net.add(id, spec);
    sender.handleConnected(id, net.now);
  };
  const initial = controller?.target() ?? s.links.length;
  for (let i = 0; i < initial; i++) open(s.links[Math.min(i, s.links.length - 1)]);
  const faults = [...(s.faults ?? [])].sort((a, b) => a.atMs - b.atMs);
  let written = 0;
  const output: Buffer[] = [];
  const failed: ConnId[] = [];
  const targets: number[] = [];
  let active = sender.connections();

  while (!(sender.isFinished() && receiver.isComplete())) {
    const now = net.now;
    if (now >= limit) throw new Error(`stuck at ${now} ms: ${JSON.stringify(sender.stats())}`);
    while (faults.length > 0 && (faults[0]?.atMs ?? Number.POSITIVE_INFINITY) <= now) {
      const f = faults.shift();
      if (f === undefined) break;
      const link = net.links.get(f.conn);
      if (link !== undefined) link.dead = true;
      if (f.kind === 'kill') {
        sender.handleDisconnected(f.conn);
        active = active.filter((c) => c !== f.conn);
      }
    }
    // Producer: write whatever the sender accepts.
    if (written < input.length) {
      written += sender.write(input.subarray(written));
      if (written === input.length) sender.finish();
    }
    sender.handleTimeout(now);
    for (let ev = sender.pollEvent(); ev !== null; ev = sender.pollEvent()) {
      const conn = ev.conn;
      if (ev.type === 'connectionFailed') {
        failed.push(conn);
        active = active.filter((c) => c !== conn);
      } else {
        net.links.delete(conn);
      }
    }
    if (controller !== null) {
      const target = controller.handleProgress(sender.stats().bytesAcked, now);
      if (target !== null) {
        targets.push(target);
        while (active.length < target) {
          open(s.links[0]);
          active = sender.connections();
        }
        while (active.length > target) {
          const id = active.pop();
          if (id !== undefined) sender.retire(id);
        }
      }
    }
    for (let hop = net.popDue(); hop !== null; hop = net.popDue()) {
      if (hop.to === 'bottleneck') {
        net.throughBottleneck(hop.conn, hop.bytes);
      } else if (hop.to === 'receiver') {
        const parsed = parseFrame(hop.bytes, receiver.maxFrame());
        if (parsed === null) throw new Error('a whole frame must parse');
        expect(parsed.used).toBe(hop.bytes.length);
        receiver.handleFrame(hop.conn, parsed.frame);
        for (let a = receiver.pollAck(); a !== null; a = receiver.pollAck())
          net.sendAck(a[0], encodeAck(a[1]));
      } else {
        const parsed = parseFrame(hop.bytes, 0);
        if (parsed?.frame.kind !== 'ack') throw new Error(`sender got ${parsed?.frame.kind}`);
        sender.handleAck(hop.conn, parsed.frame.ack, net.now);
      }
    }
    const paused = s.readerPause !== undefined && now >= s.readerPause[0] && now < s.readerPause[1];
    if (!paused) {
      for (let piece = receiver.read(); piece !== null; piece = receiver.read()) output.push(piece);
      for (let a = receiver.pollAck(); a !== null; a = receiver.pollAck()) net.sendAck(a[0], encodeAck(a[1]));
    }
    for (let tx = sender.pollTransmit(now); tx !== null; tx = sender.pollTransmit(now)) {
      net.sendData(tx.conn, Buffer.concat([tx.header, tx.payload]));
    }
    // Advance the clock to the next thing that can happen.
    const candidates = [
      net.nextTime(),
      sender.pollTimeout(),
      controller?.pollTimeout(),
      faults[0]?.atMs,
      s.readerPause?.[1],
    ].filter((t): t is number => t !== undefined && t !== null && t > now);
    const next = candidates.length > 0 ? Math.min(...candidates) : now + 1;
    net.now = Math.min(next, now + 50);
  }
  return {
    input,
    output: Buffer.concat(output),
    elapsedMs: net.now,
    sender,
    receiver,
    failed,
    targets,
  };
}

function link(mbps: number, oneWayMs: number, loss: number): LinkSpec {
  return { rate: (mbps * 1e6) / 8, delayMs: oneWayMs, loss };
}

function goodputMbps(r: Run): number {
  return (r.input.length * 8) / (r.elapsedMs / 1000) / 1e6;
}

function expectExact(r: Run): void {
  expect(r.output.length).toBe(r.input.length);
  expect(r.output.equals(r.input), 'delivered stream differs from the input').toBe(true);
}

describe('AMST JS core on a simulated network', () => {
  it('delivers ordered and exact under loss', () => {
    // 1% segment loss costs a 64 KiB frame a retransmission delay 37% of the time, so goodput
    // depends on where the losses fall: 75 to 101 Mbit/s across seeds, in this port and in
    // `sim.rs` alike. `sim.rs` asserts 0.6 × 160 with its one seed (99.5); here a few seeds are
    // held to the low end of that spread, and their mean to half the links' sum.
    const seeds = [0x9e37_79b9_7f4a_7c15n, 1n, 2n, 3n];
    const goodputs = seeds.map((lossSeed) => {
      const r = run({ links: Array(4).fill(link(40, 25, 0.01)), lossSeed });
      expectExact(r);
      expect(r.receiver.stats().duplicates).toBe(0);
      return goodputMbps(r);
    });
    for (const g of goodputs) expect(g).toBeGreaterThan(0.45 * 160);
    expect(goodputs.reduce((a, b) => a + b) / goodputs.length, `${goodputs}`).toBeGreaterThan(0.5 * 160);
  });

  it('loses nothing and duplicates nothing when a connection is killed', () => {
    const r = run({
      links: Array(3).fill(link(40, 20, 0)),
      faults: [{ atMs: 800, kind: 'kill', conn: 1 }],
    });
    expectExact(r);
    expect(r.sender.stats().framesResent).toBeGreaterThan(0);
    // Acks in flight on the dead link are lost too, so some resent frames had arrived: the
    // receiver drops those copies, and the delivered stream (checked above) has none.
    expect(r.receiver.stats().duplicates).toBeLessThanOrEqual(r.sender.stats().framesResent);
    expect(r.sender.stats().connections).toBe(2);
  });

  it('detects a black hole as a stall and routes around it', () => {
    const r = run({
      links: Array(3).fill(link(40, 20, 0)),
      faults: [{ atMs: 500, kind: 'blackHole', conn: 2 }],
    });
    expectExact(r);
    expect(r.failed).toEqual([2]);
    expect(r.sender.stats().framesResent).toBeGreaterThan(0);
  });

  it('does not let a slow connection hold the stream back', () => {
    const r = run({ links: [link(160, 10, 0), link(4, 10, 0)], bytes: 32 * MiB });
    expectExact(r);
    // Nearly the sum of both links, not twice the slow one.
    expect(goodputMbps(r)).toBeGreaterThan(140);
  });

  it('holds the rate cap when pacing', () => {
    const r = run({ links: Array(2).fill(link(200, 5, 0)), sender: { rateCap: 5_000_000 }, bytes: 20 * MiB });
    expectExact(r);
    const rate = r.input.length / (r.elapsedMs / 1000);
    expect(rate).toBeGreaterThanOrEqual(4.5e6);
    expect(rate).toBeLessThanOrEqual(5.3e6);
  });

  it('stops the sender when the reader stops, and loses nothing', () => {
    const r = run({
      links: Array(2).fill(link(100, 5, 0)),
      receiver: { window: 64 },
      readerPause: [200, 3000],
      bytes: 24 * MiB,
    });
    expectExact(r);
    expect(r.elapsedMs, 'the pause must have held the stream').toBeGreaterThan(3000);
  });

  // The two adaptation scenarios of `sim.rs` at a quarter of the bytes: rates, frames and windows
  // are all divided by four, so every frame takes as long as there and the timeline is the same.
  const quarter = { frameSize: 16 * 1024, initialWindow: 64 * 1024 };

  it('adds connections while goodput grows on a lossy path', () => {
    // Each loss-limited connection carries a few Mbit/s; the path carries 25 Mbit/s.
    const r = run({
      links: [link(3, 50, 0)],
      adapt: { epochMs: 800 },
      bottleneck: 25e6 / 8,
      bytes: 40 * MiB,
      sender: quarter,
    });
    expectExact(r);
    const most = Math.max(0, ...r.targets);
    expect(most, `targets ${r.targets}`).toBeGreaterThanOrEqual(7);
    expect(most, `targets ${r.targets}`).toBeLessThanOrEqual(12);
    expect(goodputMbps(r), `targets ${r.targets}`).toBeGreaterThan(55 / 4);
  });

  it('keeps few connections when one fills the path', () => {
    const r = run({
      links: [link(100, 5, 0)],
      adapt: { epochMs: 200 },
      bottleneck: 25e6 / 8,
      bytes: 24 * MiB,
      sender: quarter,
    });
    expectExact(r);
    const late = r.targets.slice(Math.floor(r.targets.length / 2));
    expect(
      late.every((n) => n <= 3),
      `targets ${r.targets}`,
    ).toBe(true);
  });

  it('refuses frames beyond the window or too large', () => {
    const rx = new JsReceiver({ window: 4, maxFrame: 1024 });
    const code = (f: () => void) => {
      try {
        f();
      } catch (e) {
        if (e instanceof AmstError) return e.code;
        throw e;
      }
      return 'no error';
    };
    expect(code(() => rx.handleFrame(0, { kind: 'data', seq: 9, payload: Buffer.from('x') }))).toBe(
      'ERR_AMST_BEYOND_WINDOW',
    );
    expect(code(() => rx.handleFrame(0, { kind: 'data', seq: 0, payload: Buffer.alloc(2048) }))).toBe(
      'ERR_AMST_FRAME_TOO_LARGE',
    );
    expect(code(() => rx.handleFrame(0, { kind: 'ack', ack: { seq: 0, cumulative: 0, window: 1 } }))).toBe(
      'ERR_AMST_PROTOCOL',
    );
    rx.handleFrame(0, { kind: 'fin', totalFrames: 0, totalBytes: 0 });
    expect(rx.isComplete()).toBe(true);
    expect(code(() => rx.handleFrame(0, { kind: 'data', seq: 0, payload: Buffer.from('late') }))).toBe(
      'ERR_AMST_PROTOCOL',
    );
  });
});
