/**
 * The IncomingMigration peer service (proto/dwcp/migration/v1/incoming.proto): the server handlers
 * the target node adds to its peer port, and RemoteDestination, the source node's client, which is
 * a MigrationDestination like an IncomingMigration in this process.
 */
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import type { AbortAnswer, IncomingOffer, IncomingResult, MigrationDestination } from './ports';

const PROTO_PATH = join(__dirname, '..', '..', '..', 'proto', 'dwcp', 'migration', 'v1', 'incoming.proto');

interface PrepareRequest {
  migrationId: string;
}
interface PrepareResponse {
  host: string;
  port: number;
  serverName: string;
  inventory: Buffer;
}
interface AwaitResponse {
  bytesToQemu: number;
  wireBytes: number;
  resumedAtEpochMs: number;
}
interface AbortRequest {
  migrationId: string;
  reason: string;
}
interface AbortResponse {
  destinationRuns: boolean;
}

type Unary<Req, Res> = (
  req: Req,
  options: grpc.CallOptions,
  cb: (err: grpc.ServiceError | null, res?: Res) => void,
) => grpc.ClientUnaryCall;

interface IncomingMigrationClient extends grpc.Client {
  prepare: Unary<PrepareRequest, PrepareResponse>;
  await: Unary<PrepareRequest, AwaitResponse>;
  abort: Unary<AbortRequest, AbortResponse>;
}

let cached: grpc.ServiceClientConstructor | undefined;

/** The generated client constructor; its `.service` is the server definition. */
export function incomingMigrationService(): grpc.ServiceClientConstructor {
  if (!cached) {
    const def = loadSync(PROTO_PATH, { keepCase: false, longs: Number, enums: String, defaults: true });
    const pkg = grpc.loadPackageDefinition(def) as unknown as {
      dwcp: { migration: { v1: { IncomingMigration: grpc.ServiceClientConstructor } } };
    };
    cached = pkg.dwcp.migration.v1.IncomingMigration;
  }
  return cached;
}

/** A refusal with a gRPC status, thrown by the node's handlers. */
export class IncomingMigrationError extends Error {
  constructor(
    readonly status: grpc.status,
    message: string,
  ) {
    super(message);
    this.name = 'IncomingMigrationError';
  }
}

/** What the target node does for each call; `caller` is the names in the client certificate. */
export interface IncomingMigrationHandlers {
  prepare(migrationId: string, caller: string[]): Promise<IncomingOffer>;
  await(migrationId: string, caller: string[]): Promise<IncomingResult>;
  abort(migrationId: string, reason: string, caller: string[]): Promise<AbortAnswer>;
}

/** DNS names in the peer certificate of a call on an mTLS server. */
type CallWithAuth = { getAuthContext(): { sslPeerCertificate?: { subjectaltname?: string } } };

export type CertNames = (call: CallWithAuth) => string[];

function toServiceError(e: unknown): Partial<grpc.StatusObject> {
  if (e instanceof IncomingMigrationError) return { code: e.status, details: e.message };
  const code = (e as { code?: unknown }).code;
  const message = e instanceof Error ? e.message : String(e);
  return { code: grpc.status.ABORTED, details: typeof code === 'string' ? `${code}: ${message}` : message };
}

/** The server implementation for `server.addService(incomingMigrationService().service, ...)`. */
export function incomingMigrationServer(
  handlers: IncomingMigrationHandlers,
  certNames: CertNames,
): grpc.UntypedServiceImplementation {
  const unary =
    <Req, Res>(f: (req: Req, caller: string[]) => Promise<Res>) =>
    (call: grpc.ServerUnaryCall<Req, Res>, cb: grpc.sendUnaryData<Res>) => {
      f(call.request, certNames(call)).then(
        (res) => cb(null, res),
        (e: unknown) => cb(toServiceError(e)),
      );
    };
  return {
    prepare: unary<PrepareRequest, PrepareResponse>(async (req, caller) => {
      const offer = await handlers.prepare(req.migrationId, caller);
      return {
        host: offer.host,
        port: offer.port,
        serverName: offer.serverName,
        inventory: offer.inventory ?? Buffer.alloc(0),
      };
    }),
    await: unary<PrepareRequest, AwaitResponse>(async (req, caller) => {
      const r = await handlers.await(req.migrationId, caller);
      return {
        bytesToQemu: r.sink.bytesToQemu,
        wireBytes: r.sink.wireBytes,
        resumedAtEpochMs: r.resumedAtEpochMs ?? 0,
      };
    }),
    abort: unary<AbortRequest, AbortResponse>(async (req, caller) => ({
      destinationRuns: (await handlers.abort(req.migrationId, req.reason, caller)) === 'destination-runs',
    })),
  };
}

/** PEM material of the calling node (the cluster CA, its certificate and key). */
export interface RpcIdentity {
  caPem: string;
  certPem: string;
  keyPem: string;
}

/** Where a target node's peer server is: host:port, and the name its certificate carries. */
export interface PeerEndpoint {
  addr: string;
  nodeName: string;
}

function newClient(peer: PeerEndpoint, identity: RpcIdentity): IncomingMigrationClient {
  const Ctor = incomingMigrationService();
  const creds = grpc.credentials.createSsl(
    Buffer.from(identity.caPem),
    Buffer.from(identity.keyPem),
    Buffer.from(identity.certPem),
  );
  return new Ctor(peer.addr, creds, {
    'grpc.ssl_target_name_override': peer.nodeName,
    'grpc.default_authority': peer.nodeName,
    'grpc.max_receive_message_length': 64 << 20,
    // A dead target must end a long Await promptly, even when its host just vanished.
    'grpc.keepalive_time_ms': 2000,
    'grpc.keepalive_timeout_ms': 2000,
    'grpc.keepalive_permit_without_calls': 1,
  }) as unknown as IncomingMigrationClient;
}

/**
 * One client per peer node, kept from one migration to the next: a new mutual-TLS connection
 * costs two round trips (TCP, then TLS 1.3) before a migration's first RPC, 200 ms on a 100 ms
 * path. Clients are made at a node's first migration, not ahead of it: connecting every node to
 * every peer at start changed how Raft fared on a slow path (test/cluster/adaptive-timeouts.spec.ts
 * kept a leader with 20 ms ticks at 300 ms RTT in 2 of 4 runs, never without them; not understood).
 */
export class PeerClients {
  private readonly clients = new Map<string, IncomingMigrationClient>();

  constructor(private readonly identity: RpcIdentity) {}

  /** The client for `peer`, made (and its connection started) on first use. */
  clientFor(peer: PeerEndpoint): IncomingMigrationClient {
    const key = `${peer.nodeName}@${peer.addr}`;
    let client = this.clients.get(key);
    if (client === undefined) {
      client = newClient(peer, this.identity);
      this.clients.set(key, client);
      // Connects now; a peer that is down is tried again by gRPC's own backoff, and by the call.
      client.waitForReady(Date.now() + 10_000, () => {});
    }
    return client;
  }

  /** Closes the client for `peer` and makes a new one (its connection started now). */
  renew(peer: PeerEndpoint): IncomingMigrationClient {
    const key = `${peer.nodeName}@${peer.addr}`;
    this.clients.get(key)?.close();
    this.clients.delete(key);
    return this.clientFor(peer);
  }

  /** Closes the clients of peers not in `peers` (nodes that left the cluster). */
  retain(peers: readonly PeerEndpoint[]): void {
    const keep = new Set(peers.map((p) => `${p.nodeName}@${p.addr}`));
    for (const [key, client] of this.clients) {
      if (!keep.has(key)) {
        client.close();
        this.clients.delete(key);
      }
    }
  }

  close(): void {
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }
}

export interface RemoteDestinationOptions extends PeerEndpoint {
  migrationId: string;
  identity: RpcIdentity;
  /** A pooled client to the target (its connection kept); without, the destination makes and closes its own. */
  clients?: PeerClients;
  /** Deadline of Prepare and Abort (default 30 s and 5 s); Await has none: it lasts the transfer. */
  prepareTimeoutMs?: number;
  abortTimeoutMs?: number;
}

class RemoteCallError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'RemoteCallError';
  }
}

/** The target node's half of a migration, over the IncomingMigration RPCs. */
export class RemoteDestination implements MigrationDestination {
  private client: IncomingMigrationClient;
  private readonly ownsClient: boolean;

  constructor(private readonly options: RemoteDestinationOptions) {
    this.ownsClient = options.clients === undefined;
    this.client = options.clients?.clientFor(options) ?? newClient(options, options.identity);
  }

  private call<Req, Res>(
    method: Unary<Req, Res>,
    req: Req,
    timeoutMs: number | undefined,
    what: string,
  ): Promise<Res> {
    const options: grpc.CallOptions = timeoutMs === undefined ? {} : { deadline: Date.now() + timeoutMs };
    return new Promise((resolve, reject) => {
      method.call(this.client, req, options, (err, res) => {
        if (err) {
          const code = `ERR_PEER_${grpc.status[err.code] ?? err.code}`;
          reject(
            new RemoteCallError(code, `${what} on ${this.options.nodeName}: ${err.details || err.message}`),
          );
        } else resolve(res as Res);
      });
    });
  }

  /**
   * Calls `f`, and once more on a fresh pooled client if the target was unavailable: a pooled
   * connection to a node that went away stays in gRPC's reconnect backoff after the node is back.
   */
  private async renewingOnce<T>(f: () => Promise<T>): Promise<T> {
    try {
      return await f();
    } catch (e) {
      const { clients } = this.options;
      if (clients === undefined || !(e instanceof RemoteCallError) || e.code !== 'ERR_PEER_UNAVAILABLE')
        throw e;
      this.client = clients.renew(this.options);
      return f();
    }
  }

  async prepare(): Promise<IncomingOffer> {
    const r = await this.renewingOnce(() =>
      this.call(
        this.client.prepare,
        { migrationId: this.options.migrationId },
        this.options.prepareTimeoutMs ?? 30_000,
        'preparing the destination',
      ),
    );
    const offer: IncomingOffer = { host: r.host, port: r.port, serverName: r.serverName };
    if (r.inventory.length > 0) offer.inventory = r.inventory;
    return offer;
  }

  async completion(): Promise<IncomingResult> {
    const r = await this.call(
      this.client.await,
      { migrationId: this.options.migrationId },
      undefined,
      'the destination',
    );
    const result: IncomingResult = { sink: { bytesToQemu: r.bytesToQemu, wireBytes: r.wireBytes } };
    if (r.resumedAtEpochMs > 0) result.resumedAtEpochMs = r.resumedAtEpochMs;
    return result;
  }

  async abort(reason: string): Promise<AbortAnswer> {
    try {
      const r = await this.renewingOnce(() =>
        this.call(
          this.client.abort,
          { migrationId: this.options.migrationId, reason },
          this.options.abortTimeoutMs ?? 5000,
          'aborting the destination',
        ),
      );
      return r.destinationRuns ? 'destination-runs' : 'aborted';
    } finally {
      this.close();
    }
  }

  /** Closes the client it made itself; a pooled one stays for the next migration. */
  close(): void {
    if (this.ownsClient) this.client.close();
  }
}
