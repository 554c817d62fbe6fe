/**
 * What the peer server checks in a request before the node sees it: a Raft batch speaks only for
 * the member its certificate names, a forwarded command is a cluster command, and a membership
 * change names a Raft id. A refusal is a PeerRequestError carrying the gRPC status the caller gets;
 * nothing refused reaches Raft or the log.
 */
import * as grpc from '@grpc/grpc-js';
import { clusterCommandSchema, issuePath } from '@novacron/cluster-state';
import type { MembershipChange, RaftBatch } from './peer-proto';

/** A request the peer server refuses; `code` is the gRPC status it answers with. */
export class PeerRequestError extends Error {
  constructor(
    readonly code: grpc.status,
    message: string,
  ) {
    super(message);
    this.name = 'PeerRequestError';
  }
}

const invalid = (message: string) => new PeerRequestError(grpc.status.INVALID_ARGUMENT, message);
const denied = (message: string) => new PeerRequestError(grpc.status.PERMISSION_DENIED, message);

const isRaftId = (n: unknown): n is number => Number.isSafeInteger(n) && (n as number) > 0;

/** eraftpb.Message's `from` field. */
const FROM_FIELD = 3;

/**
 * The sender of a protobuf-encoded eraftpb.Message (0 when it names none), read without decoding
 * the rest: the transport only needs to know whom a message claims to come from.
 */
export function raftMessageSender(bytes: Uint8Array): bigint {
  let pos = 0;
  const varint = (): bigint => {
    let value = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      const b = bytes[pos++];
      if (b === undefined) throw invalid('a Raft message ends inside a varint');
      value |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return BigInt.asUintN(64, value);
    }
    throw invalid('a Raft message holds a varint longer than 10 bytes');
  };
  const skip = (n: number) => {
    if (pos + n > bytes.length) throw invalid('a Raft message field runs past its end');
    pos += n;
  };
  let from = 0n;
  while (pos < bytes.length) {
    const key = varint();
    const wire = Number(key & 7n);
    if (wire === 0) {
      const v = varint();
      if (key >> 3n === BigInt(FROM_FIELD)) from = v;
    } else if (wire === 1) skip(8);
    else if (wire === 2) skip(Number(varint()));
    else if (wire === 5) skip(4);
    else throw invalid(`a Raft message holds wire type ${wire}`);
  }
  return from;
}

/**
 * A batch must come from a member this node knows (from its records, or the seeds while it
 * joins) whose name the caller's certificate carries, and every message in it must name that
 * member as its sender: a certificate speaks for one node only.
 */
export function checkBatch(
  batch: RaftBatch,
  nodeNameOf: (raftId: number) => string | undefined,
  certNames: readonly string[],
): void {
  if (!isRaftId(batch.from)) throw invalid(`from ${batch.from} is not a raft id`);
  const expected = nodeNameOf(batch.from);
  if (expected === undefined) throw denied(`raft node ${batch.from} is not a member known to this node`);
  if (!certNames.includes(expected)) throw denied(`certificate does not name raft node ${batch.from}`);
  for (const [i, m] of batch.messages.entries()) {
    const sender = raftMessageSender(m);
    if (sender === 0n) throw invalid(`message ${i} names no sender`);
    if (sender !== BigInt(batch.from)) {
      throw denied(`message ${i} claims to come from raft node ${sender}, the batch from ${batch.from}`);
    }
  }
}

/** A forwarded command must be UTF-8 JSON that is a cluster command; otherwise nothing is proposed. */
export function checkCommand(command: Buffer): void {
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(command));
  } catch (e) {
    throw invalid(`the command is not UTF-8 JSON: ${(e as Error).message}`);
  }
  const result = clusterCommandSchema.safeParse(parsed);
  if (!result.success) {
    const issue = result.error.issues[0];
    const path = issue ? issuePath(issue.path) : '';
    throw invalid(`not a cluster command: ${path ? `${path}: ` : ''}${issue?.message ?? 'invalid'}`);
  }
}

/**
 * A membership change must be of a known kind, for a Raft id, with a JSON object (or no) context.
 * A node is added only once it is registered (admission registers it first): a voter that no
 * process will ever be counts against the quorum all the same.
 */
export function checkMembershipChange(
  change: MembershipChange,
  nodeNameOf: (raftId: number) => string | undefined,
): void {
  const kind: unknown = change.kind;
  if (kind !== 'ADD_NODE' && kind !== 'REMOVE_NODE')
    throw invalid(`kind ${String(kind)} is no membership change`);
  if (!isRaftId(change.raftId))
    throw invalid(`raft_id ${change.raftId} is not a raft id (an integer in [1, 2^53 - 1])`);
  if (change.context.length > 0) {
    let context: unknown;
    try {
      context = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(change.context));
    } catch (e) {
      throw invalid(`the context is not UTF-8 JSON: ${(e as Error).message}`);
    }
    if (context === null || typeof context !== 'object' || Array.isArray(context))
      throw invalid('the context is not a JSON object');
  }
  if (kind === 'ADD_NODE' && nodeNameOf(change.raftId) === undefined) {
    throw new PeerRequestError(
      grpc.status.FAILED_PRECONDITION,
      `raft id ${change.raftId} belongs to no registered node; a node is registered before it is added`,
    );
  }
}
