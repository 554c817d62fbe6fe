/**
 * The e2e tests' view of a local cluster: the node processes themselves (libs/local-cluster,
 * shared with bench:raft), plus gRPC clients for the public API and the peer service, and a
 * concurrent write load.
 */
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { API_GRPC_OPTIONS } from '../../apps/node/src/grpc/grpc-options';
import { raftPeerService } from '../../libs/consensus/src/peer-proto';
import { type LocalCluster, type NodeProcess, until } from '../../libs/local-cluster/src/local-cluster';

export * from '../../libs/local-cluster/src/local-cluster';

export type GrpcOutcome<T = Record<string, unknown>> =
  | { ok: true; value: T }
  | { ok: false; code: grpc.status; details: string; dwcpCode: string | undefined };

type UnaryMethod = (
  req: unknown,
  md: grpc.Metadata,
  options: grpc.CallOptions,
  cb: (e: grpc.ServiceError | null, r?: unknown) => void,
) => void;

/** Calls one unary method of a loaded client; a failure comes back as its status, not a throw. */
export function grpcCall<T = Record<string, unknown>>(
  client: grpc.Client,
  method: string,
  request: unknown,
  metadata = new grpc.Metadata(),
  timeoutMs = 10_000,
): Promise<GrpcOutcome<T>> {
  const fn = (client as unknown as Record<string, UnaryMethod>)[method];
  if (!fn) throw new Error(`no method ${method}`);
  return new Promise((res) =>
    fn.call(client, request, metadata, { deadline: Date.now() + timeoutMs }, (err, value) =>
      res(
        err
          ? {
              ok: false,
              code: err.code,
              details: err.details,
              dwcpCode: err.metadata?.get('dwcp-error-code')[0]?.toString(),
            }
          : { ok: true, value: value as T },
      ),
    ),
  );
}

/** `authorization: Bearer <token>` metadata for the public gRPC API. */
export function bearer(token: string): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${token}`);
  return md;
}

let apiPackage: Record<string, grpc.ServiceClientConstructor> | undefined;

/** A client of one public gRPC API service (proto/dwcp/api/v1) on a node's plaintext loopback port. */
export function apiGrpcClient(
  n: NodeProcess,
  service: 'NodeService' | 'VmService' | 'MigrationService' | 'ClusterService',
): grpc.Client {
  apiPackage ??= (
    grpc.loadPackageDefinition(
      loadSync([...API_GRPC_OPTIONS.protoPath], API_GRPC_OPTIONS.loader),
    ) as unknown as {
      dwcp: { api: { v1: Record<string, grpc.ServiceClientConstructor> } };
    }
  ).dwcp.api.v1;
  const Ctor = apiPackage[service];
  if (!Ctor) throw new Error(`no service ${service}`);
  return new Ctor(`127.0.0.1:${n.grpcPort}`, grpc.credentials.createInsecure());
}

/**
 * A client of a node's peer service (mutual TLS) with the given credentials: `caPem` verifies the
 * server, which must present a certificate for `serverName`; a client certificate is optional so
 * tests can try without one.
 */
export function peerClient(
  n: NodeProcess,
  serverName: string,
  creds: { caPem: string; certPem?: string; keyPem?: string },
): grpc.Client {
  const Ctor = raftPeerService();
  return new Ctor(
    `127.0.0.1:${n.peerPort}`,
    grpc.credentials.createSsl(
      Buffer.from(creds.caPem),
      creds.keyPem ? Buffer.from(creds.keyPem) : null,
      creds.certPem ? Buffer.from(creds.certPem) : null,
    ),
    { 'grpc.ssl_target_name_override': serverName, 'grpc.default_authority': serverName },
  );
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * VM creates streamed concurrently through every node of a cluster, recording which were
 * acknowledged (2xx) and how the others failed. A writer whose node is down waits for it.
 */
export class WriteLoad {
  readonly acked = new Set<string>();
  /** `<status> <code>` of each refused write, or the network error of a node going away. */
  readonly failures: string[] = [];
  private stopped = false;
  private seq = 0;
  private readonly writers: Promise<void>[];

  constructor(
    private readonly cluster: LocalCluster,
    private readonly prefix: string,
    perNode = 2,
  ) {
    this.writers = cluster.nodes.flatMap((n) => Array.from({ length: perNode }, () => this.run(n)));
  }

  private async run(n: NodeProcess): Promise<void> {
    while (!this.stopped) {
      if (!n.live) {
        await pause(50);
        continue;
      }
      const name = `${this.prefix}-${n.name}-${this.seq++}`;
      try {
        const r = await this.cluster.createVm(n, name);
        if (r.status >= 200 && r.status < 300) this.acked.add(name);
        else this.failures.push(`${r.status} ${(r.body as { code?: string } | undefined)?.code ?? ''}`);
      } catch (e) {
        this.failures.push(`network ${(e as Error).message}`);
        await pause(20);
      }
    }
  }

  /** Waits until `count` more writes than now have been acknowledged. */
  async more(count: number, ms = 30_000): Promise<void> {
    const target = this.acked.size + count;
    await until(`${target} acknowledged writes`, () => this.acked.size >= target, ms);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.writers);
  }

  /** Refusals other than "no quorum / no leader right now" (503, 504) and lost connections. */
  unexpectedFailures(): string[] {
    return this.failures.filter((f) => !/^(503 ERR_UNAVAILABLE|504 ERR_TIMEOUT|network )/.test(f));
  }
}
