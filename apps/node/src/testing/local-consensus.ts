/** A consensus module around an in-memory ClusterStore, for API tests that need no Raft. Test-only. */
import type { DynamicModule } from '@nestjs/common';
import { CLUSTER_STORE, type ClusterStore, LOCAL_NODE, type LocalNode } from '@novacron/cluster-state';

class LocalConsensusModule {}

export function localConsensus(
  store: ClusterStore,
  node: LocalNode = { nodeId: 'node-1', nodeName: 'node-1' },
): DynamicModule {
  return {
    module: LocalConsensusModule,
    global: true,
    providers: [
      { provide: CLUSTER_STORE, useValue: store },
      { provide: LOCAL_NODE, useValue: node },
    ],
    exports: [CLUSTER_STORE, LOCAL_NODE],
  };
}
