/** Starts a real node API on ephemeral loopback ports around a LocalClusterStore (test double). Test-only. */
import { createHash } from 'node:crypto';
import { LocalClusterStore } from '@novacron/cluster-state/testing';
import pino from 'pino';
import { Registry } from 'prom-client';
import { parseNodeConfig } from '../config/node-config';
import { type NodeDeps, type NodeHandle, startNode } from '../start-node';
import { localConsensus } from './local-consensus';

export const TOKENS = {
  admin: 'dwcp_api_admin-secret',
  operator: 'dwcp_api_operator-secret',
  viewer: 'dwcp_api_viewer-secret',
};

// biome-ignore lint/suspicious/noExplicitAny: response bodies are JSON the specs assert with expect.
type Json = any;

export interface TestNode {
  node: NodeHandle;
  store: LocalClusterStore;
  registry: Registry;
  /** fetch against the node with the given role's token (or none). */
  call(
    method: string,
    path: string,
    init?: { role?: keyof typeof TOKENS | null; body?: unknown; raw?: string; token?: string },
  ): Promise<{ status: number; body: Json }>;
}

export async function startTestNode(extra: Partial<NodeDeps> = {}): Promise<TestNode> {
  const store = new LocalClusterStore();
  const at = '2025-01-01T00:00:00.000Z';
  for (const [role, token] of Object.entries(TOKENS)) {
    const sha256 = createHash('sha256').update(token).digest('hex');
    await store.execute({
      type: 'token.add',
      tokenId: `tok-${role}`,
      name: role,
      role: role as 'viewer',
      sha256,
      at,
    });
  }
  for (const [id, raftId, mem] of [
    ['node-1', 1, 16_384],
    ['node-2', 2, 32_768],
  ] as const) {
    await store.execute({
      type: 'node.register',
      nodeId: id,
      raftId,
      name: id,
      apiUrl: `http://127.0.0.1:${7700 + raftId}`,
      peerAddr: `127.0.0.1:${7800 + raftId}`,
      capacity: { vcpus: 16, memoryMiB: mem },
      labels: {},
      at,
    });
  }
  const registry = new Registry();
  const config = parseNodeConfig({
    nodeName: 'test',
    api: { port: 0 },
    grpcApi: { port: 0 },
    logLevel: 'silent',
  });
  const node = await startNode(config, {
    consensus: localConsensus(store),
    registry,
    logger: pino({ level: 'silent' }),
    ...extra,
  });
  const call: TestNode['call'] = async (method, path, init = {}) => {
    const headers: Record<string, string> = {};
    const role = init.role === undefined ? 'admin' : init.role;
    if (init.token !== undefined) headers.authorization = init.token;
    else if (role !== null) headers.authorization = `Bearer ${TOKENS[role]}`;
    let body: string | undefined;
    if (init.raw !== undefined) body = init.raw;
    else if (init.body !== undefined) body = JSON.stringify(init.body);
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(`${node.apiUrl}${path}`, {
      method,
      headers,
      ...(body !== undefined ? { body } : {}),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {}
    return { status: res.status, body: parsed };
  };
  return { node, store, registry, call };
}
