/**
 * Carries Raft messages and forwarded requests between nodes: one gRPC server on the peer port
 * and one client channel per peer, both with mutual TLS against the cluster CA. A peer's
 * certificate must also carry the node name that the cluster state records for its Raft id.
 */
import * as grpc from '@grpc/grpc-js';
import {
  type MembershipChange,
  type MembershipResult,
  type ProposeRequest,
  type ProposeResponse,
  type RaftBatch,
  raftPeerService,
} from './peer-proto';
import { checkBatch, checkCommand, checkMembershipChange, PeerRequestError } from './peer-requests';

/** PEM material of this node: the cluster CA, and its own certificate and key. */
export interface PeerIdentity {
  caPem: string;
  certPem: string;
  keyPem: string;
}

/** Where a peer listens, and the name its certificate must carry. */
export interface PeerAddress {
  raftId: number;
  nodeName: string;
  /** host:port of its peer server. */
  addr: string;
}

/** What the server side hands to the node. */
export interface PeerHandlers {
  deliver(from: number, messages: Buffer[]): void;
  propose(command: Buffer): Promise<ProposeResponse>;
  changeMembership(change: MembershipChange): Promise<MembershipResult>;
  /** The node name a Raft id is registered under, if known (for the certificate check). */
  nodeNameOf(raftId: number): string | undefined;
  /** Whether a node of this name is a current member: only members may forward commands. */
  isMemberName(nodeName: string): boolean;
  /** Whether the replicated state records this Raft id as removed: its messages are refused, and it is told so. */
  isRemoved(raftId: number): boolean;
}

/** How a batch of Raft messages fared: `removed` means the peer refused it because this node was removed. */
export type Delivery = 'delivered' | 'lost' | 'removed';

/** The details a peer answers a removed node's messages with (FAILED_PRECONDITION). */
const REMOVED = 'was removed from the cluster';

/** Raised by client calls; `code` is the gRPC status. */
export class PeerCallError extends Error {
  constructor(
    readonly code: grpc.status,
    message: string,
  ) {
    super(message);
    this.name = 'PeerCallError';
  }
}

type Unary<Req, Res> = (
  req: Req,
  options: grpc.CallOptions,
  cb: (err: grpc.ServiceError | null, res?: Res) => void,
) => grpc.ClientUnaryCall;

interface RaftPeerClient extends grpc.Client {
  deliver: Unary<RaftBatch, object>;
  propose: Unary<ProposeRequest, ProposeResponse>;
  changeMembership: Unary<MembershipChange, MembershipResult>;
}

/** DNS names in the peer certificate of a call on the mTLS peer server (its subjectAltName "DNS:a, IP Address:1.2.3.4"). */
export function peerCertNames(call: {
  getAuthContext(): { sslPeerCertificate?: { subjectaltname?: string } };
}): string[] {
  const san = call.getAuthContext().sslPeerCertificate?.subjectaltname ?? '';
  return san
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.startsWith('DNS:'))
    .map((s) => s.slice(4));
}

/** Marks a request that did not decode, so its handler is never called. */
const UNDECODABLE = Symbol('undecodable');

/**
 * The longest status message the peer port sends. A message that echoes a long request field
 * (a 100 kB migration id) goes past the client's HTTP/2 header list limit, and grpc-js then
 * never delivers the status: the call hangs until its deadline.
 */
export const MAX_STATUS_DETAILS = 1024;

/**
 * Guards every unary method of a service on the peer port: a request that does not decode is
 * answered INVALID_ARGUMENT (grpc-js would answer INTERNAL, a status that blames the server), and
 * status messages are cut to MAX_STATUS_DETAILS.
 */
function guarded(
  service: grpc.ServiceDefinition,
  implementation: grpc.UntypedServiceImplementation,
): [grpc.ServiceDefinition, grpc.UntypedServiceImplementation] {
  const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  const handlers: grpc.UntypedServiceImplementation = { ...implementation };
  for (const [name, method] of Object.entries(service)) {
    const handler = implementation[name] ?? implementation[method.originalName ?? name];
    if (method.requestStream || method.responseStream || typeof handler !== 'function') {
      definition[name] = method;
      continue;
    }
    definition[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return method.requestDeserialize(bytes);
        } catch (e) {
          return { [UNDECODABLE]: (e as Error).message };
        }
      },
    };
    const unary = handler as grpc.handleUnaryCall<unknown, unknown>;
    const wrapped: grpc.handleUnaryCall<unknown, unknown> = (call, cb) => {
      const answer: grpc.sendUnaryData<unknown> = (err, value) => {
        const details = err?.details;
        if (err && details !== undefined && details.length > MAX_STATUS_DETAILS) {
          cb({ ...err, details: `${details.slice(0, MAX_STATUS_DETAILS - 1)}…` }, value);
        } else cb(err, value);
      };
      const why = (call.request as { [UNDECODABLE]?: string })[UNDECODABLE];
      if (why !== undefined) {
        answer({ code: grpc.status.INVALID_ARGUMENT, details: `the request does not decode: ${why}` });
        return;
      }
      unary(call, answer);
    };
    handlers[name] = wrapped;
    if (method.originalName !== undefined) handlers[method.originalName] = wrapped;
  }
  return [definition, handlers];
}

/** The status a refused request gets: its own for a PeerRequestError, else `fallback`. */
function refusal(e: unknown, fallback: grpc.status): Partial<grpc.StatusObject> {
  return { code: e instanceof PeerRequestError ? e.code : fallback, details: (e as Error).message };
}

export class PeerTransport {
  private readonly server = new grpc.Server({ 'grpc.max_receive_message_length': 64 << 20 });
  private readonly clients = new Map<number, { addr: string; client: RaftPeerClient }>();
  private boundPort = 0;
  /** Peers with a timed Deliver call in flight (see `deliver`). */
  private readonly timing = new Set<number>();

  constructor(
    private readonly identity: PeerIdentity,
    private readonly handlers: PeerHandlers,
    /** Called with each round trip of a Deliver call, in ms (feeds the adaptive tick). */
    private readonly onRtt: (peer: number, ms: number) => void = () => undefined,
    /**
     * Injected one-way delay (fault injection): Raft batches leave this long after they are handed
     * over, and their acknowledgement counts as arriving this long after it does, so the measured
     * RTT of a link where both ends inject `d` is about 2d.
     */
    private readonly injectDelayMs = 0,
  ) {}

  /** Starts the mTLS server; returns the bound port. */
  async listen(host: string, port: number): Promise<number> {
    // A certificate from the cluster CA is not enough to write: a removed node still holds one.
    const checkMember = (call: Parameters<typeof peerCertNames>[0]): void => {
      if (!peerCertNames(call).some((name) => this.handlers.isMemberName(name)))
        throw new PeerRequestError(
          grpc.status.PERMISSION_DENIED,
          'certificate names no member of the cluster',
        );
    };
    this.addService(raftPeerService().service, {
      deliver: (call: grpc.ServerUnaryCall<RaftBatch, object>, cb: grpc.sendUnaryData<object>) => {
        try {
          // A removed node that never applied its own removal (the leader stops sending to it
          // before it learns the commit) would campaign forever: tell it.
          if (this.handlers.isRemoved(call.request.from))
            throw new PeerRequestError(
              grpc.status.FAILED_PRECONDITION,
              `raft node ${call.request.from} ${REMOVED}`,
            );
          checkBatch(call.request, (id) => this.handlers.nodeNameOf(id), peerCertNames(call));
          this.handlers.deliver(call.request.from, call.request.messages);
          cb(null, {});
        } catch (e) {
          // What Raft itself refuses (a message that does not decode, or is not for this node) too.
          cb(refusal(e, grpc.status.INVALID_ARGUMENT));
        }
      },
      propose: (
        call: grpc.ServerUnaryCall<ProposeRequest, ProposeResponse>,
        cb: grpc.sendUnaryData<ProposeResponse>,
      ) => {
        try {
          checkMember(call);
          checkCommand(call.request.command);
        } catch (e) {
          cb(refusal(e, grpc.status.INVALID_ARGUMENT));
          return;
        }
        this.handlers.propose(call.request.command).then(
          (r) => cb(null, r),
          (e: Error) => cb({ code: grpc.status.INTERNAL, details: e.message }),
        );
      },
      changeMembership: (
        call: grpc.ServerUnaryCall<MembershipChange, MembershipResult>,
        cb: grpc.sendUnaryData<MembershipResult>,
      ) => {
        try {
          checkMember(call);
          checkMembershipChange(call.request, (id) => this.handlers.nodeNameOf(id));
        } catch (e) {
          cb(refusal(e, grpc.status.INVALID_ARGUMENT));
          return;
        }
        this.handlers.changeMembership(call.request).then(
          (r) => cb(null, r),
          (e: Error) => cb({ code: grpc.status.INTERNAL, details: e.message }),
        );
      },
    });
    const creds = grpc.ServerCredentials.createSsl(
      Buffer.from(this.identity.caPem),
      [{ cert_chain: Buffer.from(this.identity.certPem), private_key: Buffer.from(this.identity.keyPem) }],
      true,
    );
    this.boundPort = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync(`${host}:${port}`, creds, (err, p) => (err ? reject(err) : resolve(p))),
    );
    return this.boundPort;
  }

  /**
   * A service on the peer port, with the same mutual TLS (the handler checks the caller's names).
   * A request that does not decode is answered INVALID_ARGUMENT and never reaches the handler;
   * status messages are cut to MAX_STATUS_DETAILS.
   */
  addService(service: grpc.ServiceDefinition, implementation: grpc.UntypedServiceImplementation): void {
    this.server.addService(...guarded(service, implementation));
  }

  get port(): number {
    return this.boundPort;
  }

  private client(peer: PeerAddress): RaftPeerClient {
    const have = this.clients.get(peer.raftId);
    if (have && have.addr === peer.addr) return have.client;
    have?.client.close();
    const Ctor = raftPeerService();
    const creds = grpc.credentials.createSsl(
      Buffer.from(this.identity.caPem),
      Buffer.from(this.identity.keyPem),
      Buffer.from(this.identity.certPem),
    );
    const client = new Ctor(peer.addr, creds, {
      // Verify the server's certificate against the node name, not the address we dialled.
      'grpc.ssl_target_name_override': peer.nodeName,
      'grpc.default_authority': peer.nodeName,
      'grpc.max_receive_message_length': 64 << 20,
      'grpc.max_send_message_length': 64 << 20,
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 1000,
    }) as unknown as RaftPeerClient;
    this.clients.set(peer.raftId, { addr: peer.addr, client });
    return client;
  }

  /** Sends Raft messages to a peer; `lost` if they did not arrive (Raft will retry). */
  async deliver(from: number, peer: PeerAddress, messages: Buffer[], timeoutMs: number): Promise<Delivery> {
    // A stall at either end (GC, SIGSTOP, the backlog after a resume) is not RTT, but every call in
    // flight across it completes late, and timing them all let one stall fill the p99 window: the
    // tick (and so the election timeout) stayed at its maximum for minutes. So one call per peer is
    // timed at a time, and an answer that came after its own deadline (its timer could not fire
    // while this process was stopped) is not a sample.
    const timed = !this.timing.has(peer.raftId);
    if (timed) this.timing.add(peer.raftId);
    const started = performance.now();
    if (this.injectDelayMs > 0) await new Promise((r) => setTimeout(r, this.injectDelayMs));
    return new Promise((resolve) => {
      this.client(peer).deliver({ from, messages }, { deadline: Date.now() + timeoutMs }, (err) => {
        if (timed) {
          this.timing.delete(peer.raftId);
          const rtt = performance.now() - started;
          if (!err && rtt <= timeoutMs + this.injectDelayMs)
            this.onRtt(peer.raftId, rtt + this.injectDelayMs);
        }
        if (!err) resolve('delivered');
        else
          resolve(
            err.code === grpc.status.FAILED_PRECONDITION && err.details.includes(REMOVED)
              ? 'removed'
              : 'lost',
          );
      });
    });
  }

  propose(peer: PeerAddress, command: Buffer, timeoutMs: number): Promise<ProposeResponse> {
    return this.unary(peer, 'propose', { command }, timeoutMs);
  }

  changeMembership(
    peer: PeerAddress,
    change: MembershipChange,
    timeoutMs: number,
  ): Promise<MembershipResult> {
    return this.unary(peer, 'changeMembership', change, timeoutMs);
  }

  private unary<K extends 'propose' | 'changeMembership', Req, Res>(
    peer: PeerAddress,
    method: K,
    req: Req,
    timeoutMs: number,
  ): Promise<Res> {
    return new Promise((resolve, reject) => {
      const fn = this.client(peer)[method] as unknown as Unary<Req, Res>;
      fn.call(this.client(peer), req, { deadline: Date.now() + timeoutMs }, (err, res) => {
        if (err) reject(new PeerCallError(err.code, err.details || err.message));
        else if (res === undefined) reject(new PeerCallError(grpc.status.INTERNAL, 'empty response'));
        else resolve(res);
      });
    });
  }

  /** Drops the channel to a peer that left. */
  forget(raftId: number): void {
    this.clients.get(raftId)?.client.close();
    this.clients.delete(raftId);
  }

  async close(): Promise<void> {
    for (const { client } of this.clients.values()) client.close();
    this.clients.clear();
    await new Promise<void>((resolve) => this.server.tryShutdown(() => resolve()));
  }
}
