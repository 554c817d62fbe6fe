/** AMST through the addon: cluster certificates, listeners and senders (TCP+TLS or QUIC, mutual TLS). */
import * as binding from '../binding';
import { asBuffer, call, callAsync } from './errors';

export type LinkKind = 'tcp' | 'quic';
export type CongestionControl = 'default' | 'cubic' | 'bbr' | 'reno';

export interface PemPair {
  certPem: string;
  keyPem: string;
}

/** What a node presents and trusts: the cluster CA, its certificate and key (PEM). */
export interface NodeIdentity {
  caPem: string;
  certPem: string;
  keyPem: string;
}

export interface ListenOptions {
  kind: LinkKind;
  host: string;
  /** 0 picks a free port. */
  port: number;
  identity: NodeIdentity;
  congestion?: CongestionControl;
  /** Receive window in frames (default 1024). */
  windowFrames?: number;
  /** Fail a transfer this long after its last connection went (default 10 s). */
  orphanTimeoutMs?: number;
}

export interface SendOptions {
  kind: LinkKind;
  host: string;
  port: number;
  /** The name the receiver's certificate must carry. */
  serverName: string;
  identity: NodeIdentity;
  /** A fixed connection count; omit for adaptive. */
  streams?: number;
  maxStreams?: number;
  initialStreams?: number;
  /** Bytes per second over all connections. */
  rateCap?: number;
  congestion?: CongestionControl;
  frameSize?: number;
}

export type TransferStats = binding.BindingTransferStats;
export type ConnectionStats = binding.BindingConnStats;
export type SendReport = binding.BindingSendReport;
/**
 * What a probe before the stream measured (docs/amst.md, "Probe"): the best round's goodput, the
 * probe frames' RTT, and per connection its share with the kernel's (TCP_INFO) or quinn's view.
 */
export type ProbeResult = binding.BindingProbeResult;
export type ProbeConnection = binding.BindingProbeConnection;
export type DrainReport = binding.BindingDrainReport;

export function generateClusterCa(clusterName: string): PemPair {
  return call(() => binding.generateClusterCa(clusterName));
}

export function issueNodeCertificate(
  ca: PemPair,
  request: { nodeName: string; extraNames?: string[]; validDays?: number },
): PemPair {
  return call(() => binding.issueNodeCertificate(ca, request));
}

/** One transfer arriving at a listener. */
export class AmstIncoming {
  constructor(private readonly handle: binding.AmstIncoming) {}

  /** The next in-order piece; `null` once the whole stream arrived. */
  read(): Promise<Buffer | null> {
    return callAsync(() => this.handle.read());
  }

  /** Reads to the end natively and returns the stream's BLAKE3: no byte crosses into JS. */
  drainToHash(): Promise<DrainReport> {
    return callAsync(() => this.handle.drainToHash());
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Buffer> {
    for (;;) {
      const piece = await this.read();
      if (piece === null) return;
      yield piece;
    }
  }
}

export class AmstListener {
  private constructor(private readonly handle: binding.AmstListener) {}

  static async bind(options: ListenOptions): Promise<AmstListener> {
    return new AmstListener(await callAsync(() => binding.AmstListener.bind(options)));
  }

  get port(): number {
    return this.handle.port;
  }

  /** Connections refused: bad certificates, plaintext, bad hellos. */
  refused(): number {
    return this.handle.refused();
  }

  /** Stops accepting; transfers already accepted go on. */
  close(): void {
    this.handle.close();
  }

  async accept(): Promise<AmstIncoming | null> {
    const incoming = await callAsync(() => this.handle.accept());
    return incoming ? new AmstIncoming(incoming) : null;
  }
}

/** Sends one stream; `write` applies backpressure, `end` then `finished` completes it. */
export class AmstSender {
  private constructor(private readonly handle: binding.AmstSender) {}

  static start(options: SendOptions): AmstSender {
    return new AmstSender(call(() => binding.AmstSender.start(options)));
  }

  write(data: Uint8Array): Promise<void> {
    return callAsync(() => this.handle.write(asBuffer(data)));
  }

  end(): void {
    this.handle.end();
  }

  cancel(): void {
    this.handle.cancel();
  }

  stats(): TransferStats {
    return this.handle.stats();
  }

  /**
   * Measures the path over this transfer's connections before the first `write`, for at most
   * `maxMs` (1 to 60000); rejects with `ERR_AMST_PROBE_FAILED` if the path is lost meanwhile.
   */
  probe(maxMs: number): Promise<ProbeResult> {
    return callAsync(() => this.handle.probe(maxMs));
  }

  finished(): Promise<SendReport> {
    return callAsync(() => this.handle.finished());
  }
}

/** Sends `bytes` of incompressible data generated natively: the benchmark path. */
export function sendSynthetic(options: SendOptions, bytes: number, seed: number): Promise<SendReport> {
  return callAsync(() => binding.sendSynthetic(options, bytes, seed));
}

/** The BLAKE3 (hex) of what `sendSynthetic(_, bytes, seed)` sends. */
export function syntheticBlake3(bytes: number, seed: number): Promise<string> {
  return callAsync(() => binding.syntheticBlake3(bytes, seed));
}
