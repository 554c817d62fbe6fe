/** A TCP link the tests can cut: every connection through it is forwarded to `target` until `cut()`. */
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { IncomingOffer, IncomingResult, MigrationDestination } from '@novacron/migration';

export class CuttableLink {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private isCut = false;
  target = 0;
  /** Connections accepted, and bytes carried towards the target. */
  connections = 0;
  bytes = 0;

  constructor() {
    this.server = createServer((client) => {
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
      client.on('data', (d: Buffer) => {
        this.bytes += d.length;
      });
      client.pipe(upstream);
      upstream.pipe(client);
    });
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

  close(): Promise<void> {
    this.cut();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** A destination whose data path goes through `link` (the RPC-free in-process case). */
export function throughLink(
  inner: MigrationDestination,
  link: CuttableLink,
  port: number,
): MigrationDestination {
  return {
    prepare: async (): Promise<IncomingOffer> => {
      const offer = await inner.prepare();
      link.target = offer.port;
      return { ...offer, host: '127.0.0.1', port };
    },
    completion: (): Promise<IncomingResult> => inner.completion(),
    abort: (reason) => inner.abort(reason),
  };
}
