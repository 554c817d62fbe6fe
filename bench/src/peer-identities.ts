/**
 * Identities for the two WAN peers (node-a sends, node-b receives): a fresh cluster CA and one
 * certificate each, written as `<dir>/<node>/{ca.pem,node.pem,node.key}`, which is what
 * wan-peer.ts reads. Shared by bench:wan and the WAN test.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateClusterCa, issueNodeCertificate } from '@novacron/native';

/** Returns the directory holding node-a/ and node-b/. */
export function writePeerIdentities(clusterName: string): string {
  const dir = mkdtempSync(join(tmpdir(), `dwcp-${clusterName}-ids-`));
  const ca = generateClusterCa(clusterName);
  for (const node of ['node-a', 'node-b']) {
    const c = issueNodeCertificate(ca, { nodeName: node });
    mkdirSync(join(dir, node));
    writeFileSync(join(dir, node, 'ca.pem'), ca.certPem);
    writeFileSync(join(dir, node, 'node.pem'), c.certPem);
    writeFileSync(join(dir, node, 'node.key'), c.keyPem);
  }
  return dir;
}
