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
}

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
    const svc = raftPeerService().service;
    const checkSender = (call: Parameters<typeof peerCertNames>[0], raftId: number | undefined): boolean => {
      if (raftId === undefined) return true;
      const expected = this.handlers.nodeNameOf(raftId);
      // A node not yet in the replicated state (mid-join) is accepted on the CA chain alone.
      return expected === undefined || peerCertNames(call).includes(expected);
    };
    // A certificate from the cluster CA is not enough to write: a removed node still holds one.
    const checkMember = (call: Parameters<typeof peerCertNames>[0]): boolean =>
      peerCertNames(call).some((name) => this.handlers.isMemberName(name));
    const notMember = {
      code: grpc.status.PERMISSION_DENIED,
      details: 'certificate names no member of the cluster',
    };
    this.server.addService(svc, {
      deliver: (call: grpc.ServerUnaryCall<RaftBatch, object>, cb: grpc.sendUnaryData<object>) => {
        if (!checkSender(call, call.request.from)) {
          cb({
            code: grpc.status.PERMISSION_DENIED,
            details: `certificate does not name raft node ${call.request.from}`,
          });
          return;
        }
        try {
          this.handlers.deliver(call.request.from, call.request.messages);
          cb(null, {});
        } catch (e) {
          cb({ code: grpc.status.INVALID_ARGUMENT, details: (e as Error).message });
        }
      },
      propose: (
        call: grpc.ServerUnaryCall<ProposeRequest, ProposeResponse>,
        cb: grpc.sendUnaryData<ProposeResponse>,
      ) => {
        if (!checkMember(call)) {
          cb(notMember);
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
        if (!checkMember(call)) {
          cb(notMember);
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

  /** Another service on the peer port, with the same mutual TLS (the handler checks the caller's names). */
  addService(service: grpc.ServiceDefinition, implementation: grpc.UntypedServiceImplementation): void {
    this.server.addService(service, implementation);
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

  /** Sends Raft messages to a peer; resolves false if they did not arrive (Raft will retry). */
  async deliver(from: number, peer: PeerAddress, messages: Buffer[], timeoutMs: number): Promise<boolean> {
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
        resolve(!err);
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
