/** Both ends of the native data path for in-process migrations (specs and bench:tcg): node-a sends, node-b (with a chunk store in `workDir`) receives. */
import { join } from 'node:path';
import { NativeSinkPath, NativeSourcePath } from '@novacron/migration';
import { ChunkStore, generateClusterCa, issueNodeCertificate, type NodeIdentity } from '@novacron/native';

export function testDataPaths(
  workDir: string,
  caName: string,
): { sinkPath: NativeSinkPath; sourcePath: NativeSourcePath } {
  const ca = generateClusterCa(caName);
  const identity = (nodeName: string): NodeIdentity => ({
    caPem: ca.certPem,
    ...issueNodeCertificate(ca, { nodeName }),
  });
  return {
    sinkPath: new NativeSinkPath({
      store: ChunkStore.open(join(workDir, 'store'), 1024 * 1024 * 1024),
      identity: identity('node-b'),
      nodeName: 'node-b',
      host: '127.0.0.1',
      orphanTimeoutMs: 1500,
    }),
    sourcePath: new NativeSourcePath({ identity: identity('node-a') }),
  };
}
