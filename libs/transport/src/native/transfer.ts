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
import { ReceiveMeter, resultOf, SendMeter } from './meter';
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
  readonly #meter: SendMeter;
  readonly #timer: NodeJS.Timeout;
  #done: Promise<SendReport> | undefined;

  private constructor(sender: AmstSender, options: TransferOptions) {
    super();
    this.#sender = sender;
    this.#meter = new SendMeter(amstMetrics(options.registry ?? defaultRegistry));
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
    let result: 'ok' | 'failed' | 'cancelled' = 'ok';
    try {
      return await this.#sender.finished();
    } catch (e) {
      result = resultOf(e);
      throw e;
    } finally {
      clearInterval(this.#timer);
      this.#tick();
      this.#meter.finish(result);
    }
  }

  #tick(): void {
    const now = this.#sender.stats();
    this.#meter.update(now);
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
    const meter = new ReceiveMeter(this.metrics);
    let bytes = 0;
    let result: 'ok' | 'failed' = 'ok';
    try {
      for await (const piece of incoming) {
        bytes += piece.length;
        meter.update({ bytes, framesRejected: 0, connectionsCorrupted: 0 });
        yield piece;
      }
    } catch (e) {
      result = 'failed';
      throw e;
    } finally {
      meter.finish(result);
    }
  }
}
