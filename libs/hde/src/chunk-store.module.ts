/**
 * The node's chunk store (`<dataDir>/chunks`): the chunks this node holds, by BLAKE3 id, which an
 * incoming migration's sender need not send again. One store per node, shared by every migration.
 */
import { mkdirSync } from 'node:fs';
import { type DynamicModule, Module } from '@nestjs/common';
import { ChunkStore } from '@novacron/native';

export const CHUNK_STORE = Symbol.for('dwcp.ChunkStore');

export interface ChunkStoreOptions {
  dir: string;
  /** The store evicts least-recently-used chunks past this many bytes. */
  capacityBytes: number;
}

@Module({})
// biome-ignore lint/complexity/noStaticOnlyClass: a Nest dynamic module is a class with a static forRoot.
export class ChunkStoreModule {
  static forRoot(options: ChunkStoreOptions): DynamicModule {
    return {
      module: ChunkStoreModule,
      global: true,
      providers: [
        {
          provide: CHUNK_STORE,
          useFactory: () => {
            mkdirSync(options.dir, { recursive: true });
            return ChunkStore.open(options.dir, options.capacityBytes);
          },
        },
      ],
      exports: [CHUNK_STORE],
    };
  }
}
