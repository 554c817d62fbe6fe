/**
 * The native AMST path for the rest of DWCP: a transfer that emits live `stats` events and keeps
 * the `dwcp_amst_*` metrics, and a receiver that counts what arrives. Bytes move natively; JS sees
 * progress, not data, unless it writes or reads them itself.
 */
import { EventEmitter } from 'node:events';
import {
  type AmstIncoming,
  AmstListener,
  AmstSender,
  type ListenOptions,
  type SendOptions,
  type SendReport,
  type TransferStats,
} from '@novacron/native';
import { register as defaultRegistry, type Registry } from 'prom-client';
import { type AmstMetrics, amstMetrics } from './metrics';

export interface TransferOptions extends SendOptions {
  /** How often `stats` fires (default 500 ms). */
  statsIntervalMs?: number;
  /** Where the metrics go (default: prom-client's global registry). */
  registry?: Registry;
}

export interface AmstTransferEvents {
  stats: [TransferStats];
}

/** One outgoing stream over the native transport. */
export class AmstTransfer extends EventEmitter<AmstTransferEvents> {
  readonly #sender: AmstSender;
  readonly #metrics: AmstMetrics;
  readonly #timer: NodeJS.Timeout;
  readonly #started = process.hrtime.bigint();
  #last: TransferStats | undefined;
  #done: Promise<SendReport> | undefined;

  private constructor(sender: AmstSender, options: TransferOptions) {
    super();
    this.#sender = sender;
    this.#metrics = amstMetrics(options.registry ?? defaultRegistry);
    this.#timer = setInterval(() => this.#tick(), options.statsIntervalMs ?? 500);
    this.#timer.unref();
  }

  /** Connects (TCP+TLS or QUIC, mutual TLS) and starts sending what is written. */
  static start(options: TransferOptions): AmstTransfer {
    return new AmstTransfer(AmstSender.start(options), options);
  }

  /** Resolves when the bytes are queued; waits while the network is behind. */
  write(data: Uint8Array): Promise<void> {
    return this.#sender.write(data);
  }

  /** Sends everything `source` yields, ends the stream and waits for the receiver to have it. */
  async sendFrom(source: AsyncIterable<Uint8Array>, signal?: AbortSignal): Promise<SendReport> {
    const onAbort = () => this.cancel();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const piece of source) {
        signal?.throwIfAborted();
        await this.write(piece);
      }
      this.#sender.end();
      return await this.finished();
    } catch (e) {
      // Whatever stopped us, stop the transfer too and let it record how it ended.
      this.cancel();
      await this.finished().catch(() => undefined);
      throw e;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  end(): void {
    this.#sender.end();
  }

  /** Stops now: connections close, `finished` rejects with `ERR_AMST_CANCELLED`. */
  cancel(): void {
    this.#sender.cancel();
  }

  stats(): TransferStats {
    return this.#sender.stats();
  }

  /** Waits for the whole stream to be acknowledged. */
  finished(): Promise<SendReport> {
    this.#done ??= this.#finish();
    return this.#done;
  }

  async #finish(): Promise<SendReport> {
    let result = 'ok';
    try {
      return await this.#sender.finished();
    } catch (e) {
      result = (e as { code?: string }).code === 'ERR_AMST_CANCELLED' ? 'cancelled' : 'failed';
      throw e;
    } finally {
      clearInterval(this.#timer);
      this.#tick();
      this.#metrics.connections.dec(this.#last?.connections.length ?? 0);
      this.#metrics.streamsTarget.dec(this.#last?.targetStreams ?? 0);
      this.#metrics.goodput.set(0);
      this.#metrics.transfers.inc({ direction: 'send', result });
      this.#metrics.duration.observe(Number(process.hrtime.bigint() - this.#started) / 1e9);
    }
  }

  #tick(): void {
    const now = this.#sender.stats();
    const prev = this.#last;
    this.#last = now;
    const m = this.#metrics;
    m.bytesSent.inc(now.bytesAcked - (prev?.bytesAcked ?? 0));
    m.framesResent.inc(now.framesResent - (prev?.framesResent ?? 0));
    m.connections.inc(now.connections.length - (prev?.connections.length ?? 0));
    m.streamsTarget.inc(now.targetStreams - (prev?.targetStreams ?? 0));
    const dt = now.elapsedSeconds - (prev?.elapsedSeconds ?? 0);
    if (dt > 0) m.goodput.set((now.bytesAcked - (prev?.bytesAcked ?? 0)) / dt);
    for (const c of now.connections)
      if (c.srttMs !== undefined && c.srttMs !== null) m.rtt.observe(c.srttMs / 1000);
    this.emit('stats', now);
  }
}

/** Listens for transfers; each accepted one is counted into the metrics as it is read. */
export class AmstReceiver {
  private constructor(
    readonly listener: AmstListener,
    private readonly metrics: AmstMetrics,
  ) {}

  static async listen(options: ListenOptions & { registry?: Registry }): Promise<AmstReceiver> {
    const listener = await AmstListener.bind(options);
    return new AmstReceiver(listener, amstMetrics(options.registry ?? defaultRegistry));
  }

  get port(): number {
    return this.listener.port;
  }

  /** The next transfer, as an async iterable of in-order pieces. */
  async accept(): Promise<AsyncIterable<Buffer> | null> {
    const incoming = await this.listener.accept();
    return incoming ? this.#counted(incoming) : null;
  }

  async *#counted(incoming: AmstIncoming): AsyncGenerator<Buffer> {
    const started = process.hrtime.bigint();
    let result = 'ok';
    try {
      for await (const piece of incoming) {
        this.metrics.bytesReceived.inc(piece.length);
        yield piece;
      }
    } catch (e) {
      result = 'failed';
      throw e;
    } finally {
      this.metrics.transfers.inc({ direction: 'receive', result });
      this.metrics.duration.observe(Number(process.hrtime.bigint() - started) / 1e9);
    }
  }
}
