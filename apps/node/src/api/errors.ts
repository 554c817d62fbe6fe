/** One place that turns failures into the API's error body and into HTTP and gRPC statuses. */
import { status as GrpcStatus } from '@grpc/grpc-js';
import { DomainError, ERROR_CODES } from '@novacron/cluster-state';
import type { ZodError, ZodIssue } from 'zod';

/**
 * The state machine's codes, plus two only the API raises: ERR_INTERNAL (a fault of ours) and
 * ERR_METHOD_NOT_ALLOWED (a known path asked with a method it does not serve).
 */
export const API_ERROR_CODES = [...ERROR_CODES, 'ERR_INTERNAL', 'ERR_METHOD_NOT_ALLOWED'] as const;
export type ApiErrorCode = (typeof API_ERROR_CODES)[number];

export interface FieldProblem {
  path: string;
  message: string;
}

export interface ApiErrorBody {
  code: ApiErrorCode;
  message: string;
  fields?: FieldProblem[];
  /** Extra machine-readable context, e.g. the failed health indicators. */
  details?: unknown;
}

export const HTTP_STATUS: Record<ApiErrorCode, number> = {
  ERR_INVALID_ARGUMENT: 400,
  ERR_UNAUTHENTICATED: 401,
  ERR_PERMISSION_DENIED: 403,
  ERR_NOT_FOUND: 404,
  ERR_METHOD_NOT_ALLOWED: 405,
  ERR_CONFLICT: 409,
  ERR_INTERNAL: 500,
  ERR_UNAVAILABLE: 503,
  ERR_TIMEOUT: 504,
};

/**
 * A conflict is FAILED_PRECONDITION: the request is well-formed but the cluster's current state
 * refuses it (a VM already migrating, a failed label expectation), and repeating it unchanged
 * will fail again until that state changes. ABORTED would invite blind retries. A method a path does
 * not serve is REST's alone (gRPC answers an unknown method UNIMPLEMENTED by itself).
 */
export const GRPC_STATUS: Record<ApiErrorCode, GrpcStatus> = {
  ERR_INVALID_ARGUMENT: GrpcStatus.INVALID_ARGUMENT,
  ERR_UNAUTHENTICATED: GrpcStatus.UNAUTHENTICATED,
  ERR_PERMISSION_DENIED: GrpcStatus.PERMISSION_DENIED,
  ERR_NOT_FOUND: GrpcStatus.NOT_FOUND,
  ERR_METHOD_NOT_ALLOWED: GrpcStatus.UNIMPLEMENTED,
  ERR_CONFLICT: GrpcStatus.FAILED_PRECONDITION,
  ERR_INTERNAL: GrpcStatus.INTERNAL,
  ERR_UNAVAILABLE: GrpcStatus.UNAVAILABLE,
  ERR_TIMEOUT: GrpcStatus.DEADLINE_EXCEEDED,
};

function issueProblems(issue: ZodIssue): FieldProblem[] {
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((k) => ({ path: [...issue.path, k].join('.'), message: 'Unrecognized key' }));
  }
  return [{ path: issue.path.join('.'), message: issue.message }];
}

/** A validation failure as the API reports it; `where` names the request part (body, query, id). */
export function invalidArgument(error: ZodError, where: string): DomainError & { fields: FieldProblem[] } {
  const fields = error.issues.flatMap(issueProblems);
  const summary = fields.map((f) => (f.path ? `${f.path}: ${f.message}` : f.message)).join('; ');
  return Object.assign(new DomainError('ERR_INVALID_ARGUMENT', `invalid ${where}: ${summary}`), { fields });
}

/** Errors that are the client's mistake carry their own code; anything else is ours: ERR_INTERNAL. */
export function toApiError(error: unknown): ApiErrorBody {
  if (error instanceof DomainError) {
    const withFields = error as DomainError & { fields?: FieldProblem[] };
    const fields =
      withFields.fields ??
      (error.field !== undefined ? [{ path: error.field, message: error.message }] : undefined);
    return { code: error.code, message: error.message, ...(fields ? { fields } : {}) };
  }
  return { code: 'ERR_INTERNAL', message: 'internal error' };
}
