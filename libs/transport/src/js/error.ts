/**
 * Errors of AMST, with the same stable codes and messages as the native crates: the core's
 * (`native/crates/amst/src/error.rs`) and two of the runtime's (`crates/transport/src/error.rs`).
 * A peer that causes one is closed; the process is not.
 */

export type AmstErrorCode =
  | 'ERR_AMST_MALFORMED_FRAME'
  | 'ERR_AMST_FRAME_TOO_LARGE'
  | 'ERR_AMST_BEYOND_WINDOW'
  | 'ERR_AMST_PROTOCOL'
  | 'ERR_AMST_INVALID_PARAM'
  | 'ERR_AMST_NO_CONNECTION'
  // The runtime's: a connection's first bytes were not a hello it could take; a TLS handshake failed.
  | 'ERR_AMST_BAD_HELLO'
  | 'ERR_AMST_TLS';

export class AmstError extends Error {
  override readonly name = 'AmstError';
  /** For `ERR_AMST_INVALID_PARAM`: the parameter's name as JS spells it. */
  readonly field: string | undefined;

  constructor(
    readonly code: AmstErrorCode,
    message: string,
    options: { field?: string; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.field = options.field;
  }

  /** A frame header is not well formed. */
  static malformedFrame(detail: string): AmstError {
    return new AmstError('ERR_AMST_MALFORMED_FRAME', `malformed frame: ${detail}`);
  }

  /** A frame declares more payload than the limit. */
  static frameTooLarge(len: number, limit: number): AmstError {
    return new AmstError('ERR_AMST_FRAME_TOO_LARGE', `frame of ${len} bytes exceeds the ${limit}-byte limit`);
  }

  /** The peer sent data beyond the window the receiver advertised. */
  static beyondWindow(seq: number, next: number, window: number): AmstError {
    return new AmstError(
      'ERR_AMST_BEYOND_WINDOW',
      `frame ${seq} is beyond the receive window (next expected ${next}, window ${window} frames)`,
    );
  }

  /** The peer contradicted itself (data after FIN, an ack for a frame never sent, …). */
  static protocol(detail: string): AmstError {
    return new AmstError('ERR_AMST_PROTOCOL', `protocol violation: ${detail}`);
  }

  /** A parameter is out of range; `field` names it. */
  static invalidParam(field: string, reason: string): AmstError {
    return new AmstError('ERR_AMST_INVALID_PARAM', `invalid parameter \`${field}\`: ${reason}`, { field });
  }

  /** A connection's first bytes were not a hello the listener could take. */
  static badHello(detail: string): AmstError {
    return new AmstError('ERR_AMST_BAD_HELLO', `bad hello: ${detail}`);
  }

  /** The TLS handshake failed: unknown CA, wrong name, expired, or not TLS at all. */
  static tls(peer: string, reason: string, cause?: unknown): AmstError {
    return new AmstError('ERR_AMST_TLS', `TLS handshake with ${peer} failed: ${reason}`, { cause });
  }

  /** No connection is left to carry the stream. */
  static noConnection(detail: string, cause?: unknown): AmstError {
    return new AmstError('ERR_AMST_NO_CONNECTION', `no connection left: ${detail}`, { cause });
  }
}
