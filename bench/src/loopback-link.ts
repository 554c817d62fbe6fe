/**
 * A TCP link on loopback toward a migration's sink, for tests and benches: every connection
 * through it is forwarded to `target`; optionally at one rate for all connections together (as
 * one slow link carries every AMST connection: towards the target, each chunk waits for its turn
 * on a shared clock), and it can be cut (every connection reset, new ones refused) and restored.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { IncomingOffer, IncomingResult, MigrationDestination } from '@novacron/migration';

/** How far the link may run ahead of its rate after an idle moment. */
const BURST_MS = 5;

export class LoopbackLink {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private isCut = false;
  /** Who waits for the link to have carried so many bytes (`carried`). */
  private readonly waiters: { bytes: number; resolve: () => void }[] = [];
  /** When the link is free again (performance.now() ms): every connection books its bytes here. */
  private freeAtMs = 0;
  /** Where connections go: the destination sink's port, set when it is known. */
  target = 0;
  /** Connections accepted, and bytes carried towards the target. */
  connections = 0;
  bytes = 0;

  /** `bytesPerSec` caps all connections together; without it the link only forwards. */
  constructor(readonly bytesPerSec?: number) {
    this.server = createServer((client) => this.carry(client));
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    const address = this.server.address();
    if (address === null || typeof address === 'string') throw new Error('no port');
    return address.port;
  }

  /** Drops every connection (no FIN: reset) and refuses new ones. */
  cut(): void {
    this.isCut = true;
    for (const s of this.sockets) s.resetAndDestroy();
  }

  /** Takes connections again after a `cut`; the ones it reset stay gone. */
  restore(): void {
    this.isCut = false;
  }

  /** Resolves once the link has carried `bytes` towards the target in all, on the chunk that crosses it. */
  carried(bytes: number): Promise<void> {
    if (this.bytes >= bytes) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ bytes, resolve }));
  }

  /** `inner`, with the data path's connections sent through this link (the RPC-free in-process case). */
  carrying(inner: MigrationDestination, port: number): MigrationDestination {
    return {
      prepare: async (): Promise<IncomingOffer> => {
        const offer = await inner.prepare();
        this.target = offer.port;
        return { ...offer, host: '127.0.0.1', port };
      },
      completion: (): Promise<IncomingResult> => inner.completion(),
      abort: (reason) => inner.abort(reason),
    };
  }

  close(): Promise<void> {
    this.cut();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  /** Books `n` bytes on the link; how long the sender must wait before they are on it, ms. */
  private book(n: number, bytesPerSec: number): number {
    const now = performance.now();
    this.freeAtMs = Math.max(this.freeAtMs, now - BURST_MS) + (n / bytesPerSec) * 1000;
    return Math.max(0, this.freeAtMs - now - BURST_MS);
  }

  private count(n: number): void {
    this.bytes += n;
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      const waiter = this.waiters[i];
      if (waiter !== undefined && this.bytes >= waiter.bytes) {
        this.waiters.splice(i, 1);
        waiter.resolve();
      }
    }
  }

  private carry(client: Socket): void {
    if (this.isCut || this.target === 0) {
      client.destroy();
      return;
    }
    this.connections++;
    const upstream = connect(this.target, '127.0.0.1');
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
      s.on('error', () => undefined);
    }
    upstream.pipe(client);
    const rate = this.bytesPerSec;
    if (rate === undefined) {
      client.on('data', (d: Buffer) => {
        this.count(d.length);
      });
      client.pipe(upstream);
      return;
    }
    client.on('data', (d: Buffer) => {
      this.count(d.length);
      const waitMs = this.book(d.length, rate);
      const full = !upstream.write(d);
      if (waitMs > 0 || full) {
        client.pause();
        const resume = () => setTimeout(() => client.resume(), waitMs);
        if (full) upstream.once('drain', resume);
        else resume();
      }
    });
    client.on('end', () => upstream.end());
    client.on('close', () => upstream.end());
    upstream.on('close', () => client.destroy());
  }
}
