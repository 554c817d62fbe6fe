/** TLS for the API listeners: plaintext is only ever served on loopback; anything else uses the node certificate. */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, isLoopback, type NodeConfig } from './node-config';

export interface ListenerTls {
  certPem: string;
  keyPem: string;
  caPem?: string;
}

/** Where `cluster init` / join leave this node's certificate (libs/consensus ClusterFiles). */
export function nodeCertificatePaths(dataDir: string): { cert: string; key: string; ca: string } {
  const dir = join(dataDir, 'cluster');
  return { cert: join(dir, 'node.pem'), key: join(dir, 'node.key'), ca: join(dir, 'ca.pem') };
}

/**
 * Undefined for a loopback host (plaintext); the node certificate otherwise, or a ConfigError naming
 * `key` when the certificate is missing, so a node never serves plaintext beyond this machine.
 */
export function listenerTls(
  config: NodeConfig,
  key: 'api.host' | 'grpcApi.host',
  host: string,
): ListenerTls | undefined {
  if (isLoopback(host)) return undefined;
  const paths = nodeCertificatePaths(config.dataDir);
  for (const file of [paths.cert, paths.key]) {
    if (!existsSync(file)) {
      throw new ConfigError(
        key,
        `${host} is not a loopback address, so this listener needs TLS, but ${file} does not exist (initialise or join a cluster first, or listen on 127.0.0.1)`,
      );
    }
  }
  return {
    certPem: readFileSync(paths.cert, 'utf8'),
    keyPem: readFileSync(paths.key, 'utf8'),
    ...(existsSync(paths.ca) ? { caPem: readFileSync(paths.ca, 'utf8') } : {}),
  };
}
