/**
 * A real single-node cluster for the CLI's tests: `dwcp node start` in this process (real Raft,
 * real REST API) on free loopback ports, with a fresh data directory. Test-only.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '@novacron/local-cluster';
import { type NodeHandle, type NodeModuleOverrides, runNode } from '@novacron/node';

export { freePort };

/**
 * The node registers itself and the admin token through Raft once it leads, after the API is up.
 * The check goes through the node's own app (inject), so it needs no client CA for a TLS API.
 */
async function untilAdminTokenWorks(handle: NodeHandle, token: string): Promise<void> {
  const fastify = handle.app.getHttpAdapter().getInstance() as {
    inject(o: {
      method: string;
      url: string;
      headers: Record<string, string>;
    }): Promise<{ statusCode: number }>;
  };
  const end = Date.now() + 20_000;
  for (;;) {
    const res = await fastify.inject({
      method: 'GET',
      url: '/v1/nodes',
      headers: { authorization: `Bearer ${token}` },
    });
    if (res.statusCode === 200) return;
    if (Date.now() > end) throw new Error(`the admin token still gets ${res.statusCode} after 20 s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface RealNode {
  handle: NodeHandle;
  dataDir: string;
  /** The REST API as the CLI should reach it (always via 127.0.0.1). */
  apiUrl: string;
  adminToken: string;
  close(): Promise<void>;
}

/**
 * `apiHost` other than loopback makes the node serve its API over TLS with its cluster certificate;
 * `overrides` put other modules in place of built-in ones (another hypervisor driver).
 */
export async function startRealNode(
  apiHost = '127.0.0.1',
  overrides: NodeModuleOverrides = {},
): Promise<RealNode> {
  const dataDir = mkdtempSync(join(tmpdir(), 'dwcp-cli-'));
  const [apiPort, peerPort, grpcPort] = [await freePort(), await freePort(), await freePort()];
  const handle = await runNode(
    [
      '--data-dir',
      dataDir,
      '--node-name',
      'cli-test',
      '--api-host',
      apiHost,
      '--api-port',
      String(apiPort),
      '--peer-port',
      String(peerPort),
      '--grpc-api-port',
      String(grpcPort),
      '--raft-min-tick-ms',
      '20',
      '--log-level',
      'silent',
    ],
    {},
    overrides,
  );
  const scheme = handle.apiUrl.startsWith('https:') ? 'https' : 'http';
  const adminToken = readFileSync(join(dataDir, 'cluster', 'admin.token'), 'utf8').trim();
  await untilAdminTokenWorks(handle, adminToken);
  return {
    handle,
    dataDir,
    apiUrl: `${scheme}://127.0.0.1:${apiPort}`,
    adminToken,
    close: async () => {
      await handle.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
