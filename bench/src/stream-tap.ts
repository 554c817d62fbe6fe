/**
 * A tap on a migration stream's unix socket: QEMU (or the sink) connects to the tap's own socket,
 * and every byte is forwarded to the real one and hashed on the way. Put one at each end of the data
 * path, and the two digests say whether the destination QEMU was fed exactly what the source QEMU
 * wrote.
 */
import { createHash, type Hash } from 'node:crypto';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { MigrationSocket, SinkDataPath, SourceDataPath } from '@novacron/migration';

export interface TapReading {
  bytes: number;
  sha256: string;
  /** Connections the tap accepted (a migration stream is one). */
  connections: number;
}

export class StreamTap {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly hash: Hash = createHash('sha256');
  private bytes = 0;
  private connections = 0;
  private ended: Promise<void>;
  private endedNow!: () => void;

  /** Listens on `path`, forwards to `target` (retried for up to 5 s: a QEMU may still be starting). */
  constructor(
    readonly path: string,
    private readonly target: string,
    /** Carries at most this many bytes per second (a slow link), when set. */
    private readonly bytesPerSec?: number,
  ) {
    this.ended = new Promise((resolve) => {
      this.endedNow = resolve;
    });
    this.server = createServer((client) => void this.carry(client));
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.path, () => resolve());
    });
  }

  private async carry(client: Socket): Promise<void> {
    this.connections++;
    client.pause();
    this.track(client);
    const upstream = await this.dial();
    if (upstream === undefined) {
      client.destroy();
      return;
    }
    this.track(upstream);
    const startedAt = performance.now();
    client.on('data', (d: Buffer) => {
      this.hash.update(d);
      this.bytes += d.length;
      const aheadMs = this.bytesPerSec
        ? (this.bytes / this.bytesPerSec) * 1000 - (performance.now() - startedAt)
        : 0;
      if (!upstream.write(d) || aheadMs > 5) {
        client.pause();
        const resume = () => setTimeout(() => client.resume(), Math.max(0, aheadMs));
        if (upstream.writableNeedDrain) upstream.once('drain', resume);
        else resume();
      }
    });
    client.on('end', () => {
      upstream.end();
      this.endedNow();
    });
    client.on('close', () => upstream.end());
    upstream.on('close', () => client.destroy());
    upstream.on('data', (d: Buffer) => client.write(d));
    client.resume();
  }

  private async dial(): Promise<Socket | undefined> {
    const deadline = performance.now() + 5000;
    while (performance.now() < deadline) {
      const s = await new Promise<Socket | undefined>((resolve) => {
        const socket = connect(this.target);
        socket.once('connect', () => resolve(socket));
        socket.once('error', () => resolve(undefined));
      });
      if (s !== undefined) return s;
      await sleep(20);
    }
    return undefined;
  }

  private track(s: Socket): void {
    this.sockets.add(s);
    s.on('close', () => this.sockets.delete(s));
    s.on('error', () => undefined);
  }

  /** What passed, once the stream ended (or after `timeoutMs` if it never does). */
  async reading(timeoutMs = 10_000): Promise<TapReading> {
    await Promise.race([this.ended, sleep(timeoutMs)]);
    return { bytes: this.bytes, sha256: this.hash.copy().digest('hex'), connections: this.connections };
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** The source's data path with a tap between the source QEMU and MigrationSource. */
export function tappedSource(inner: SourceDataPath, onTap: (tap: StreamTap) => void): SourceDataPath {
  const real = new Map<string, string>();
  return {
    socket: async (migrationId: string): Promise<MigrationSocket> => {
      const socket = await inner.socket(migrationId);
      const tap = new StreamTap(`${socket.path}.tap`, socket.path);
      real.set(tap.path, socket.path);
      await tap.listen();
      onTap(tap);
      return {
        path: tap.path,
        release: async () => {
          await tap.close();
          await socket.release();
        },
      };
    },
    startSource: (options) =>
      inner.startSource({ ...options, socketPath: real.get(options.socketPath) ?? options.socketPath }),
  };
}

/** The destination's data path with a tap between the sink and the destination QEMU. */
export function tappedSink(inner: SinkDataPath, onTap: (tap: StreamTap) => void): SinkDataPath {
  return {
    socket: (migrationId: string) => inner.socket(migrationId),
    openSink: async (socketPath: string) => {
      const tap = new StreamTap(`${socketPath}.tap`, socketPath);
      await tap.listen();
      onTap(tap);
      const sink = await inner.openSink(tap.path);
      let finished: ReturnType<typeof sink.finished> | undefined;
      return {
        port: sink.port,
        stats: () => sink.stats(),
        cancel: () => sink.cancel(),
        finished: () => {
          finished ??= sink.finished().finally(() => setTimeout(() => void tap.close(), 1000));
          return finished;
        },
      };
    },
    offer: (port: number) => inner.offer(port),
  };
}
