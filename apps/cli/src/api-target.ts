/**
 * Where the API is and how to prove who we are: flags, then DWCP_* variables, then the node's data
 * directory (its admin token and cluster CA), then the node's default address.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { ApiClient, type ApiTarget } from './api-client';
import { usageError } from './exit-codes';

/** The node's default api.host and api.port (apps/node/src/config/node-config.ts); loopback, so plain http. */
const DEFAULT_API_URL = 'http://127.0.0.1:7700';
const DEFAULT_DATA_DIR = './.dwcp';
const TIMEOUT_MS = 30_000;

export interface ApiOptions {
  api?: string;
  token?: string;
  tokenFile?: string;
  dataDir?: string;
  ca?: string;
}

/** The connection flags every API command takes; no defaults here, so DWCP_* variables can fill the gaps. */
export function addApiOptions(command: Command): Command {
  return command
    .option('--api <url>', `the node's API URL (env DWCP_API_URL; default ${DEFAULT_API_URL})`)
    .option('--token <token>', 'API bearer token (env DWCP_TOKEN)')
    .option('--token-file <file>', 'read the API token from this file')
    .option(
      '--data-dir <dir>',
      `a node data directory: its cluster/admin.token and cluster/ca.pem are used when no token or CA is given (env DWCP_DATA_DIR; default ${DEFAULT_DATA_DIR})`,
    )
    .option(
      '--ca <file>',
      'CA certificate (PEM) that signs an https API (default <data-dir>/cluster/ca.pem)',
    );
}

function readText(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw usageError(`cannot read ${what} ${file}: ${(e as Error).message}`);
  }
}

function parseApiUrl(text: string, from: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw usageError(`${from}: ${text} is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw usageError(`${from}: ${text} must be an http:// or https:// URL`);
  }
  return url;
}

function resolveApiTarget(o: ApiOptions, env: NodeJS.ProcessEnv): ApiTarget {
  const url =
    o.api !== undefined
      ? parseApiUrl(o.api, '--api')
      : env.DWCP_API_URL
        ? parseApiUrl(env.DWCP_API_URL, 'DWCP_API_URL')
        : new URL(DEFAULT_API_URL);
  const clusterDir = join(o.dataDir ?? (env.DWCP_DATA_DIR || DEFAULT_DATA_DIR), 'cluster');
  const adminTokenFile = join(clusterDir, 'admin.token');
  let token: string | undefined;
  if (o.token !== undefined) token = o.token;
  else if (o.tokenFile !== undefined) token = readText(o.tokenFile, 'token file').trim();
  else if (env.DWCP_TOKEN) token = env.DWCP_TOKEN;
  else if (existsSync(adminTokenFile)) token = readText(adminTokenFile, 'token file').trim();
  const target: ApiTarget = { url, timeoutMs: TIMEOUT_MS, ...(token ? { token } : {}) };
  if (url.protocol === 'https:') {
    const dataDirCa = join(clusterDir, 'ca.pem');
    const caFile = o.ca ?? (existsSync(dataDirCa) ? dataDirCa : undefined);
    if (caFile !== undefined) {
      target.caPem = readText(caFile, 'CA file');
      target.caSource = caFile;
    }
  }
  return target;
}

/** Runs `use` with a client for these options and closes its connections afterwards. */
export async function withApi<T>(
  o: ApiOptions,
  env: NodeJS.ProcessEnv,
  use: (client: ApiClient) => Promise<T>,
): Promise<T> {
  const client = new ApiClient(resolveApiTarget(o, env));
  try {
    return await use(client);
  } finally {
    client.close();
  }
}
