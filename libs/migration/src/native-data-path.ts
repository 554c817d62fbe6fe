/** The real data path: `MigrationSource` on the source node, `MigrationSink` and its ChunkStore on the destination. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type ChunkStore,
  type LinkKind,
  MigrationSink,
  MigrationSource,
  type NodeIdentity,
} from '@novacron/native';
import type { AmstMetrics } from '@novacron/transport';
import { meteredSink, meteredSource } from './metered-data-path';
import type {
  DataPathSink,
  IncomingOffer,
  MigrationSocket,
  SinkDataPath,
  SourceDataPath,
  SourceDataPathEnd,
} from './ports';

/** A fresh unix socket path in a directory of its own (paths must stay under 108 bytes and not exist yet). */
async function migrationSocket(
  migrationId: string,
  role: 'sink' | 'source',
  root = tmpdir(),
): Promise<MigrationSocket> {
  const dir = await mkdtemp(join(root, `dwcp-${role}-${migrationId.slice(-8)}-`));
  return { path: join(dir, `${role}.sock`), release: () => rm(dir, { recursive: true, force: true }) };
}

export interface NativeSinkPathOptions {
  /** This node's store: chunks it holds travel as references, and it keeps what arrives. */
  store: ChunkStore;
  identity: NodeIdentity;
  /** The name in this node's certificate, which the source checks. */
  nodeName: string;
  /** The address sinks listen on; also what the source is told to dial unless `advertiseHost` is set. */
  host: string;
  advertiseHost?: string;
  kind?: LinkKind;
  /** How long a sink waits for a lost source before it gives up (AMST's default is 10 s). */
  orphanTimeoutMs?: number;
  socketRoot?: string;
  /** Where the sink's transfer is metered (`dwcp_amst_*`); unmetered without. */
  metrics?: AmstMetrics;
}

export class NativeSinkPath implements SinkDataPath {
  constructor(private readonly options: NativeSinkPathOptions) {}

  socket(migrationId: string): Promise<MigrationSocket> {
    return migrationSocket(migrationId, 'sink', this.options.socketRoot);
  }

  async openSink(socketPath: string): Promise<DataPathSink> {
    const { kind = 'tcp', host, identity, orphanTimeoutMs, store, metrics } = this.options;
    const sink = await MigrationSink.start(
      {
        socketPath,
        listen: {
          kind,
          host,
          port: 0,
          identity,
          ...(orphanTimeoutMs === undefined ? {} : { orphanTimeoutMs }),
        },
      },
      store,
    );
    return metrics ? meteredSink(sink, metrics) : sink;
  }

  offer(port: number): IncomingOffer {
    const { store, host, advertiseHost, nodeName } = this.options;
    const offer: IncomingOffer = { host: advertiseHost ?? host, port, serverName: nodeName };
    if (store.count > 0) offer.inventory = store.inventory();
    return offer;
  }
}

export interface NativeSourcePathOptions {
  identity: NodeIdentity;
  kind?: LinkKind;
  socketRoot?: string;
  /** Where the source's transfer is metered (`dwcp_amst_*`); unmetered without. */
  metrics?: AmstMetrics;
}

export class NativeSourcePath implements SourceDataPath {
  constructor(private readonly options: NativeSourcePathOptions) {}

  socket(migrationId: string): Promise<MigrationSocket> {
    return migrationSocket(migrationId, 'source', this.options.socketRoot);
  }

  startSource(o: {
    socketPath: string;
    offer: IncomingOffer;
    streams: number;
    zstdLevel: number;
    bufferBytes?: number;
  }): SourceDataPathEnd {
    const { kind = 'tcp', identity, metrics } = this.options;
    const source = MigrationSource.start({
      socketPath: o.socketPath,
      send: {
        kind,
        host: o.offer.host,
        port: o.offer.port,
        serverName: o.offer.serverName,
        identity,
        streams: o.streams,
      },
      codec: { codec: 'zstd', level: o.zstdLevel },
      ...(o.offer.inventory ? { inventory: o.offer.inventory } : {}),
      ...(o.bufferBytes === undefined ? {} : { bufferBytes: Math.round(o.bufferBytes) }),
    });
    if (!metrics) return source;
    // The metered wrapper passes stats and reports through; the probe goes straight to the source.
    return { ...meteredSource(source, metrics), probe: (maxMs: number) => source.probe(maxMs) };
  }
}
