/** Error mapping shared by every facade module: `CODE: message` from the addon becomes a NativeError. */

/** An error raised by native code, with a stable machine-readable code such as `ERR_HDE_CHUNK_CORRUPT`. */
export class NativeError extends Error {
  override readonly name = 'NativeError';
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const CODED = /^(ERR_[A-Z0-9_]+): ([\s\S]*)$/;

/** Lifts the code out of an addon error; anything else (e.g. an AbortError) passes through. */
export function liftError(e: unknown): unknown {
  if (e instanceof Error) {
    const m = CODED.exec(e.message);
    if (m?.[1] !== undefined && m[2] !== undefined) return new NativeError(m[1], m[2]);
  }
  return e;
}

export function call<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw liftError(e);
  }
}

/**
 * Runs an addon task. napi-rs only cancels a task whose signal fires while it is queued, so a
 * signal that is already aborted is honoured here, before any work starts.
 */
export async function callAsync<T>(f: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  signal?.throwIfAborted();
  try {
    return await f();
  } catch (e) {
    throw liftError(e);
  }
}

export function asBuffer(data: Uint8Array): Buffer {
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}
