/** The control plane's error vocabulary: stable codes that REST, gRPC and the CLI map to their own statuses. */

export const ERROR_CODES = [
  'ERR_NOT_FOUND',
  'ERR_CONFLICT',
  'ERR_INVALID_ARGUMENT',
  'ERR_UNAUTHENTICATED',
  'ERR_PERMISSION_DENIED',
  'ERR_UNAVAILABLE',
  'ERR_TIMEOUT',
] as const;

export type DomainErrorCode = (typeof ERROR_CODES)[number];

/** What a rejected command records in its outcome; plain data so it survives JSON and the Raft log. */
export interface DomainErrorInfo {
  code: DomainErrorCode;
  message: string;
  /** The offending input field, when one is to blame (e.g. `nodeId`, `labels.env`). */
  field?: string;
}

export class DomainError extends Error {
  override readonly name = 'DomainError';

  constructor(
    readonly code: DomainErrorCode,
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }

  static from(info: DomainErrorInfo): DomainError {
    return new DomainError(info.code, info.message, info.field);
  }

  toJSON(): DomainErrorInfo {
    return this.field === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, field: this.field };
  }
}

export function isDomainErrorCode(value: unknown): value is DomainErrorCode {
  return typeof value === 'string' && (ERROR_CODES as readonly string[]).includes(value);
}
