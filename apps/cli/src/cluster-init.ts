/** `dwcp cluster init`: makes a data directory the first member of a new cluster. */
import { resolve } from 'node:path';
import { ClusterFiles } from '@novacron/consensus';

export interface ClusterInitOptions {
  dataDir: string;
  nodeName: string;
  clusterName: string;
}

/** Creates the cluster CA, this node's certificate, an admin token and a join token; prints how to go on. */
export function clusterInit(o: ClusterInitOptions, print: (line: string) => void): void {
  const files = new ClusterFiles(o.dataDir);
  if (files.exists()) {
    throw Object.assign(
      new Error(`${resolve(files.dir)} already belongs to cluster ${files.membership().clusterName}`),
      {
        code: 'ERR_ALREADY_INITIALIZED',
      },
    );
  }
  const { adminToken, joinToken } = files.init(o.clusterName, o.nodeName);
  print(`cluster ${o.clusterName} created in ${resolve(files.dir)} (this node: ${o.nodeName}, raft id 1)`);
  print(`admin token (role admin; also in ${resolve(files.dir, 'admin.token')}):`);
  print(`  ${adminToken}`);
  print(`join token (also in ${resolve(files.dir, 'join.token')}):`);
  print(`  ${joinToken}`);
  print('start this node:   dwcp node start --data-dir <dir>');
  print('join another host: dwcp node start --join <this node API URL> --join-token <join token>');
}
