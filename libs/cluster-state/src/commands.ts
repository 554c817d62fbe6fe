/** Log encoding of commands and the outcome of applying one. */
import type { DomainErrorInfo } from './errors';
import type { ClusterCommand } from './schema';

/** A rejected command is still a committed entry: its outcome says why it changed nothing. */
export type CommandOutcome = { ok: true; result: unknown } | { ok: false; error: DomainErrorInfo };

/** The bytes of a command as they go into the Raft log (UTF-8 JSON). */
export function encodeCommand(command: ClusterCommand): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(command));
}

/**
 * Reads a log entry back. It does not validate: `ClusterStateMachine.apply` does, so that a malformed
 * entry becomes a rejected outcome on every replica alike instead of an exception on some of them.
 */
export function decodeCommand(bytes: Uint8Array): unknown {
  return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
}
