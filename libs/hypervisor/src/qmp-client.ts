/**
 * A QMP client over a unix socket (node:net): the greeting, capability negotiation, commands
 * matched to replies by id, and events handed to listeners. QEMU's JSON in, typed results and
 * errors out; nothing here knows about migrations or VMs.
 */

import { connect, type Socket } from 'node:net';
import { HypervisorError, QmpError } from './errors';
import type { QmpEvent } from './events';
import { LineSplitter } from './serial-console';

/** QEMU's version, from the greeting. */
export interface QmpVersion {
  major: number;
  minor: number;
  micro: number;
  /** Distribution suffix, e.g. `Debian 1:7.2+dfsg-7+deb12u18`. */
  package: string;
}

export interface QmpClientOptions {
  /** How long `connect` may take, greeting and `qmp_capabilities` included. */
  connectTimeoutMs?: number;
  /** How long a command may wait for its reply unless the call says otherwise. */
  commandTimeoutMs?: number;
}

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

export class QmpClient {
  private readonly pending = new Map<number, Pending>();
  private readonly eventListeners = new Set<(event: QmpEvent) => void>();
  private readonly closeListeners = new Set<(reason: HypervisorError) => void>();
  private readonly splitter = new LineSplitter();
  private nextId = 1;
  private closedBy: HypervisorError | undefined;
  private greeting: ((version: QmpVersion) => void) | undefined;
  private version_: QmpVersion | undefined;

  private constructor(
    private readonly socket: Socket,
    readonly path: string,
    private readonly commandTimeoutMs: number,
  ) {
    socket.on('data', (chunk) => {
      for (const line of this.splitter.push(chunk)) this.receive(line);
    });
    socket.on('error', (error) => this.shutdown(this.disconnected(error.message), error));
    socket.on('close', () => this.shutdown(this.disconnected('the connection closed')));
  }

  /** Connects, reads the greeting and leaves capability negotiation mode. */
  static async connect(path: string, options: QmpClientOptions = {}): Promise<QmpClient> {
    const connectTimeoutMs = options.connectTimeoutMs ?? 5_000;
    const socket = connect(path);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const client = new QmpClient(socket, path, options.commandTimeoutMs ?? 30_000);
    try {
      await withTimeout(client.awaitGreeting(), connectTimeoutMs, `QMP greeting from ${path}`);
      await client.execute('qmp_capabilities', undefined, { timeoutMs: connectTimeoutMs });
    } catch (error) {
      client.close();
      throw error;
    }
    return client;
  }

  get version(): QmpVersion {
    if (this.version_ === undefined) throw new Error('QmpClient: no greeting yet');
    return this.version_;
  }

  get isClosed(): boolean {
    return this.closedBy !== undefined;
  }

  /**
   * Runs one command. Rejects with `QmpError` when QEMU refuses it, and with a `HypervisorError`
   * when the connection is lost (`ERR_HV_QMP_DISCONNECTED`) or no reply comes (`ERR_HV_TIMEOUT`).
   */
  execute<T = unknown>(
    command: string,
    args?: Record<string, unknown>,
    options: { timeoutMs?: number } = {},
  ): Promise<T> {
    if (this.closedBy) return Promise.reject(this.closedBy);
    const id = this.nextId++;
    const request = args === undefined ? { execute: command, id } : { execute: command, arguments: args, id };
    return new Promise<T>((resolve, reject) => {
      const timeoutMs = options.timeoutMs ?? this.commandTimeoutMs;
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new HypervisorError('ERR_HV_TIMEOUT', `QMP ${command}: no reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { command, resolve: resolve as (value: unknown) => void, reject, timer });
      this.socket.write(`${JSON.stringify(request)}\n`);
    });
  }

  /** Calls `listener` with every event; returns the function that stops it. */
  onEvent(listener: (event: QmpEvent) => void): () => void {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }

  /** Calls `listener` once the connection is gone, with the reason. */
  onClose(listener: (reason: HypervisorError) => void): () => void {
    if (this.closedBy) {
      listener(this.closedBy);
      return () => {};
    }
    this.closeListeners.add(listener);
    return () => this.closeListeners.delete(listener);
  }

  close(): void {
    this.shutdown(this.disconnected('the client closed it'));
  }

  private awaitGreeting(): Promise<QmpVersion> {
    if (this.version_) return Promise.resolve(this.version_);
    return new Promise((resolve, reject) => {
      this.greeting = resolve;
      this.onClose(reject);
    });
  }

  private receive(line: string): void {
    if (line.trim() === '') return;
    let message: Record<string, unknown>;
    try {
      message = JSON.parse(line);
    } catch {
      this.fail(`not JSON: ${line.slice(0, 200)}`);
      return;
    }
    if (typeof message !== 'object' || message === null) {
      this.fail(`not a JSON object: ${line.slice(0, 200)}`);
    } else if ('QMP' in message) {
      this.version_ = parseGreeting(message.QMP);
      this.greeting?.(this.version_);
      this.greeting = undefined;
    } else if ('event' in message) {
      const event = message as unknown as QmpEvent;
      event.data ??= {};
      for (const listener of this.eventListeners) listener(event);
    } else if ('return' in message || 'error' in message) {
      this.settle(message);
    } else {
      this.fail(`unexpected message: ${line.slice(0, 200)}`);
    }
  }

  private settle(message: Record<string, unknown>): void {
    // A reply whose id we no longer hold belongs to a call that already timed out.
    const pending = typeof message.id === 'number' ? this.pending.get(message.id) : undefined;
    if (pending === undefined || typeof message.id !== 'number') return;
    this.pending.delete(message.id);
    clearTimeout(pending.timer);
    if ('error' in message) {
      const error = (message.error ?? {}) as { class?: unknown; desc?: unknown };
      pending.reject(
        new QmpError(pending.command, String(error.class ?? 'GenericError'), String(error.desc ?? '')),
      );
    } else {
      pending.resolve(message.return);
    }
  }

  private fail(detail: string): void {
    const error = new HypervisorError('ERR_HV_QMP_PROTOCOL', `QMP at ${this.path}: ${detail}`);
    this.shutdown(error);
  }

  private disconnected(detail: string): HypervisorError {
    return new HypervisorError('ERR_HV_QMP_DISCONNECTED', `QMP at ${this.path}: ${detail}`);
  }

  private shutdown(reason: HypervisorError, cause?: unknown): void {
    if (this.closedBy) return;
    this.closedBy =
      cause === undefined ? reason : new HypervisorError(reason.code, reason.message, { cause });
    this.socket.destroy();
    for (const [id, pending] of this.pending) {
      clearTimeout(pending.timer);
      this.pending.delete(id);
      pending.reject(
        new HypervisorError(reason.code, `${reason.message} while ${pending.command} was pending`, { cause }),
      );
    }
    for (const listener of this.closeListeners) listener(this.closedBy);
    this.closeListeners.clear();
    this.eventListeners.clear();
  }
}

function parseGreeting(qmp: unknown): QmpVersion {
  const version = (qmp as { version?: { qemu?: Record<string, unknown>; package?: unknown } })?.version;
  const qemu = version?.qemu ?? {};
  return {
    major: Number(qemu.major ?? 0),
    minor: Number(qemu.minor ?? 0),
    micro: Number(qemu.micro ?? 0),
    package: String(version?.package ?? '').trim(),
  };
}

async function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new HypervisorError('ERR_HV_TIMEOUT', `${what}: nothing within ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
