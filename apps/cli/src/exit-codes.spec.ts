import { describe, expect, it } from 'vitest';
import { CliError, EXIT, errorLines, exitCodeForApiError, exitCodeForStatus, exitCodeOf } from './exit-codes';

describe('exit codes', () => {
  it('maps every API error code', () => {
    expect(
      Object.fromEntries(
        [
          'ERR_INVALID_ARGUMENT',
          'ERR_UNAUTHENTICATED',
          'ERR_PERMISSION_DENIED',
          'ERR_NOT_FOUND',
          'ERR_CONFLICT',
          'ERR_UNAVAILABLE',
          'ERR_TIMEOUT',
          'ERR_INTERNAL',
        ].map((code) => [code, exitCodeForApiError(code, 0)]),
      ),
    ).toEqual({
      ERR_INVALID_ARGUMENT: 2,
      ERR_UNAUTHENTICATED: 5,
      ERR_PERMISSION_DENIED: 5,
      ERR_NOT_FOUND: 3,
      ERR_CONFLICT: 4,
      ERR_UNAVAILABLE: 6,
      ERR_TIMEOUT: 6,
      ERR_INTERNAL: 1,
    });
  });

  it('falls back to the HTTP status for an answer without a known code', () => {
    expect([400, 401, 403, 404, 409, 413, 500, 502, 503, 504].map(exitCodeForStatus)).toEqual([
      2, 5, 5, 3, 4, 2, 1, 6, 6, 6,
    ]);
    expect(exitCodeForApiError('ERR_HTTP_503', 503)).toBe(EXIT.unavailable);
    expect(exitCodeForApiError(undefined, 404)).toBe(EXIT.notFound);
  });

  it('gives a thrown error its code: CliError its own, others by their code, else 1', () => {
    expect(exitCodeOf(new CliError('ERR_MIGRATION_FAILED', 'x', EXIT.migrationFailed))).toBe(7);
    expect(exitCodeOf(Object.assign(new Error('config: api.port: bad'), { code: 'ERR_CONFIG' }))).toBe(2);
    expect(exitCodeOf(new Error('boom'))).toBe(1);
    expect(exitCodeOf('thrown text')).toBe(1);
  });

  it('names the API code and the fields in the message', () => {
    const conflict = new CliError(
      'ERR_CONFLICT',
      'VM vm-abc is stopped; only a running VM is live-migrated',
      EXIT.conflict,
      [{ path: 'vmId', message: 'VM vm-abc is stopped; only a running VM is live-migrated' }],
    );
    expect(errorLines(conflict)).toEqual([
      'dwcp: ERR_CONFLICT: VM vm-abc is stopped; only a running VM is live-migrated (vmId)',
    ]);
    const invalid = new CliError('ERR_INVALID_ARGUMENT', 'invalid body: vcpus: too small; name: bad', 2, [
      { path: 'vcpus', message: 'too small' },
      { path: 'name', message: 'bad' },
    ]);
    expect(errorLines(invalid)).toEqual([
      'dwcp: ERR_INVALID_ARGUMENT: invalid body: vcpus: too small; name: bad',
      '  vcpus: too small',
      '  name: bad',
    ]);
    expect(errorLines(new Error('plain'))).toEqual(['dwcp: plain']);
  });
});
