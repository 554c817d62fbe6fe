/**
 * The CLI's stable exit codes and the error type that carries one, so scripts can branch on what
 * went wrong without parsing messages. The table is documented in `dwcp --help` and apps/cli/README.md.
 */

export const EXIT = {
  ok: 0,
  unexpected: 1,
  usage: 2,
  notFound: 3,
  conflict: 4,
  auth: 5,
  unavailable: 6,
  migrationFailed: 7,
  migrationCancelled: 8,
  /** A second Ctrl-C stopped following a migration (the shell's 128 + SIGINT). */
  interrupted: 130,
} as const;

export const EXIT_CODES_HELP = `
Exit codes:
    0  success (for dwcp migrate: the migration is done)
    1  unexpected error
    2  usage or invalid argument (including the API's 400, with its per-field messages)
    3  not found (404)
    4  conflict with the cluster's state (409)
    5  authentication or permission (401, 403, or an API certificate that does not verify)
    6  cluster unavailable, unreachable or timed out (503, 504, connection refused)
    7  the migration ended failed
    8  the migration ended cancelled
  130  a second Ctrl-C stopped following a migration (it goes on in the cluster)`;

export interface FieldProblem {
  path: string;
  message: string;
}

/** A failure the CLI reports as `dwcp: <code>: <message>` and ends with `exitCode`. */
export class CliError extends Error {
  override readonly name = 'CliError';

  constructor(
    /** The API's error code (ERR_CONFLICT, ...) or the CLI's own (ERR_USAGE, ...). */
    readonly code: string,
    message: string,
    readonly exitCode: number,
    readonly fields: readonly FieldProblem[] = [],
  ) {
    super(message);
  }
}

export function usageError(message: string): CliError {
  return new CliError('ERR_USAGE', message, EXIT.usage);
}

const EXIT_FOR_CODE: Record<string, number> = {
  ERR_INVALID_ARGUMENT: EXIT.usage,
  ERR_UNAUTHENTICATED: EXIT.auth,
  ERR_PERMISSION_DENIED: EXIT.auth,
  ERR_NOT_FOUND: EXIT.notFound,
  ERR_CONFLICT: EXIT.conflict,
  ERR_UNAVAILABLE: EXIT.unavailable,
  ERR_TIMEOUT: EXIT.unavailable,
  ERR_INTERNAL: EXIT.unexpected,
  // Raised in-process by `dwcp node start` and `dwcp cluster init`.
  ERR_CONFIG: EXIT.usage,
  ERR_ALREADY_INITIALIZED: EXIT.conflict,
};

/** For an answer without a known API code (a proxy's error page, say). */
export function exitCodeForStatus(status: number): number {
  if (status === 401 || status === 403) return EXIT.auth;
  if (status === 404) return EXIT.notFound;
  if (status === 409) return EXIT.conflict;
  if (status === 502 || status === 503 || status === 504) return EXIT.unavailable;
  if (status >= 400 && status < 500) return EXIT.usage;
  return EXIT.unexpected;
}

/** The API's `code` decides; the HTTP status only when the code is missing or unknown. */
export function exitCodeForApiError(code: string | undefined, status: number): number {
  return (code !== undefined ? EXIT_FOR_CODE[code] : undefined) ?? exitCodeForStatus(status);
}

/** The exit code for anything a command threw. */
export function exitCodeOf(error: unknown): number {
  if (error instanceof CliError) return error.exitCode;
  const code = (error as { code?: unknown } | null)?.code;
  return (typeof code === 'string' ? EXIT_FOR_CODE[code] : undefined) ?? EXIT.unexpected;
}

/**
 * `dwcp: ERR_CONFLICT: VM vm-abc is stopped; only a running VM is live-migrated (vmId)`: a single
 * field that only repeats the message is named in brackets; several are listed one per line.
 */
export function errorLines(error: unknown): string[] {
  const code = (error as { code?: unknown } | null)?.code;
  const message = error instanceof Error ? error.message : String(error);
  const head = `dwcp: ${typeof code === 'string' ? `${code}: ` : ''}${message}`;
  const fields = error instanceof CliError ? error.fields : [];
  const [only] = fields;
  if (fields.length === 1 && only !== undefined && only.message === message && only.path !== '') {
    return [`${head} (${only.path})`];
  }
  return [head, ...fields.map((f) => `  ${f.path === '' ? '(request)' : f.path}: ${f.message}`)];
}
