/** Mutual TLS for the JS path: every connection is TLS 1.3, and both ends prove a certificate of the cluster CA. */

import type { ConnectionOptions, TlsOptions } from 'node:tls';

/** A node's credentials, PEM-encoded. */
export interface TlsIdentity {
  /** The CA that signs the peers this node accepts. */
  ca: string;
  /** This node's certificate (chain). */
  cert: string;
  key: string;
}

export function serverTlsOptions(id: TlsIdentity, handshakeTimeoutMs: number): TlsOptions {
  return {
    ca: id.ca,
    cert: id.cert,
    key: id.key,
    minVersion: 'TLSv1.3',
    requestCert: true,
    rejectUnauthorized: true,
    handshakeTimeout: handshakeTimeoutMs,
  };
}

/**
 * Client options: the server must present a certificate of `ca` for `serverName` (checked by
 * Node's default `checkServerIdentity` against the certificate's SANs).
 */
export function clientTlsOptions(id: TlsIdentity, serverName: string): ConnectionOptions {
  return {
    ca: id.ca,
    cert: id.cert,
    key: id.key,
    minVersion: 'TLSv1.3',
    servername: serverName,
    rejectUnauthorized: true,
  };
}

/** What a cancelled transfer rejects with (the shape of Node's own `AbortError`). */
export class JsAbortError extends Error {
  override readonly name = 'AbortError';
  readonly code = 'ABORT_ERR';
  constructor(reason?: unknown) {
    super('the transfer was aborted', reason === undefined ? undefined : { cause: reason });
  }
}
