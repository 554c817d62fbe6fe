/** The real MigrationDataPath: `MigrationSource`/`MigrationSink` from the addon, both ends in this process. */
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
import type { DataPathEnd, DataPathSink, MigrationDataPath, MigrationSockets, SourceCounters } from './ports';

export interface NativeDataPathOptions {
  /** The destination node's store; its inventory goes to the source, so held chunks travel as references. */
  store: ChunkStore;
  sourceIdentity: NodeIdentity;
  destinationIdentity: NodeIdentity;
  /** The name in the destination's certificate. */
  destinationNodeName: string;
  kind?: LinkKind;
  host?: string;
  /** How long the sink waits for a lost source before it gives up (AMST's default is 10 s). */
  orphanTimeoutMs?: number;
}

export class NativeDataPath implements MigrationDataPath {
  constructor(private readonly options: NativeDataPathOptions) {}

  async sockets(migrationId: string): Promise<MigrationSockets> {
    // Short and fresh: unix socket paths must stay under 108 bytes and must not exist yet.
    const dir = await mkdtemp(join(tmpdir(), `dwcp-mig-${migrationId.slice(-8)}-`));
    return {
      sink: join(dir, 'sink.sock'),
      source: join(dir, 'source.sock'),
      release: () => rm(dir, { recursive: true, force: true }),
    };
  }

  openSink(socketPath: string): Promise<DataPathSink> {
    const { kind = 'tcp', host = '127.0.0.1', destinationIdentity, orphanTimeoutMs, store } = this.options;
    return MigrationSink.start(
      {
        socketPath,
        listen: {
          kind,
          host,
          port: 0,
          identity: destinationIdentity,
          ...(orphanTimeoutMs === undefined ? {} : { orphanTimeoutMs }),
        },
      },
      store,
    );
  }

  startSource(o: {
    socketPath: string;
    sinkPort: number;
    streams: number;
    zstdLevel: number;
  }): DataPathEnd<SourceCounters> {
    const { kind = 'tcp', host = '127.0.0.1', sourceIdentity, destinationNodeName, store } = this.options;
    // In one process the destination's inventory is at hand; between nodes it will come over RPC.
    const inventory = store.count > 0 ? store.inventory() : undefined;
    return MigrationSource.start({
      socketPath: o.socketPath,
      send: {
        kind,
        host,
        port: o.sinkPort,
        serverName: destinationNodeName,
        identity: sourceIdentity,
        streams: o.streams,
      },
      codec: { codec: 'zstd', level: o.zstdLevel },
      ...(inventory ? { inventory } : {}),
    });
  }
}
