/**
 * Turns the successive stats snapshots of one native transfer into `dwcp_amst_*` increments, so
 * every sender (a plain AmstTransfer, a migration's MigrationSource) and every receiver (a
 * migration's MigrationSink) meters alike.
 */
import type { TransferStats } from '@novacron/native';
import type { AmstMetrics } from './metrics';

export type TransferResult = 'ok' | 'failed' | 'cancelled';

/** The result of a transfer that threw `e`. */
export function resultOf(e: unknown): TransferResult {
  return (e as { code?: string }).code?.endsWith('_CANCELLED') ? 'cancelled' : 'failed';
}

/** One outgoing transfer. */
export class SendMeter {
  private last: TransferStats | undefined;
  private connectionsFailed = 0;
  private readonly started = process.hrtime.bigint();
  private done = false;

  constructor(private readonly metrics: AmstMetrics) {}

  /** Counts what changed since the last snapshot; `connectionsFailed` is the sender's running total. */
  update(now: TransferStats, connectionsFailed = 0): void {
    if (this.done) return;
    const prev = this.last;
    this.last = now;
    const m = this.metrics;
    m.bytesSent.inc(Math.max(0, now.bytesAcked - (prev?.bytesAcked ?? 0)));
    m.framesResent.inc(Math.max(0, now.framesResent - (prev?.framesResent ?? 0)));
    m.connectionsFailed.inc(Math.max(0, connectionsFailed - this.connectionsFailed));
    this.connectionsFailed = connectionsFailed;
    m.connections.inc(now.connections.length - (prev?.connections.length ?? 0));
    m.streamsTarget.inc(now.targetStreams - (prev?.targetStreams ?? 0));
    const dt = now.elapsedSeconds - (prev?.elapsedSeconds ?? 0);
    if (dt > 0) m.goodput.set((now.bytesAcked - (prev?.bytesAcked ?? 0)) / dt);
    for (const c of now.connections)
      if (c.srttMs !== undefined && c.srttMs !== null) m.rtt.observe(c.srttMs / 1000);
  }

  /** The transfer ended: its connections close, and it counts once as finished. */
  finish(result: TransferResult): void {
    if (this.done) return;
    this.done = true;
    const m = this.metrics;
    m.connections.dec(this.last?.connections.length ?? 0);
    m.streamsTarget.dec(this.last?.targetStreams ?? 0);
    m.goodput.set(0);
    m.transfers.inc({ direction: 'send', result });
    m.duration.observe(Number(process.hrtime.bigint() - this.started) / 1e9);
  }
}

/** What a receiving end reports: in-order bytes, and what it refused as damaged. */
export interface ReceiveSnapshot {
  bytes: number;
  /** Frames with a wrong CRC (damaged above TLS): dropped and asked for again. */
  framesRejected: number;
  /** Connections that died on a TLS record failing its check. */
  connectionsCorrupted: number;
}

/** One incoming transfer. */
export class ReceiveMeter {
  private last: ReceiveSnapshot = { bytes: 0, framesRejected: 0, connectionsCorrupted: 0 };
  private readonly started = process.hrtime.bigint();
  private done = false;

  constructor(private readonly metrics: AmstMetrics) {}

  update(now: ReceiveSnapshot): void {
    if (this.done) return;
    const m = this.metrics;
    m.bytesReceived.inc(Math.max(0, now.bytes - this.last.bytes));
    m.framesRejected.inc(Math.max(0, now.framesRejected - this.last.framesRejected));
    m.connectionsCorrupted.inc(Math.max(0, now.connectionsCorrupted - this.last.connectionsCorrupted));
    this.last = now;
  }

  finish(result: TransferResult): void {
    if (this.done) return;
    this.done = true;
    this.metrics.transfers.inc({ direction: 'receive', result });
    this.metrics.duration.observe(Number(process.hrtime.bigint() - this.started) / 1e9);
  }
}
