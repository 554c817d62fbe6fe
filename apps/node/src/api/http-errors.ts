/**
 * Turns anything thrown while serving HTTP into the API's error body. Client mistakes keep their 4xx
 * (fastify's own, such as malformed JSON, included); only a fault of ours becomes 500 ERR_INTERNAL,
 * and that one is logged.
 */
import { HttpException } from '@nestjs/common';
import { DomainError } from '@novacron/cluster-state';
import type { Logger } from 'pino';
import { type ApiErrorBody, type ApiErrorCode, HTTP_STATUS, toApiError } from './errors';

const CODE_FOR_STATUS: Record<number, ApiErrorCode> = {
  401: 'ERR_UNAUTHENTICATED',
  403: 'ERR_PERMISSION_DENIED',
  404: 'ERR_NOT_FOUND',
  409: 'ERR_CONFLICT',
  503: 'ERR_UNAVAILABLE',
  504: 'ERR_TIMEOUT',
};

function clientStatusOf(error: unknown): number | undefined {
  if (error instanceof HttpException) return error.getStatus();
  const status = (error as { statusCode?: unknown } | null)?.statusCode;
  return typeof status === 'number' ? status : undefined;
}

export function httpErrorResponse(
  error: unknown,
  logger: Logger,
  route: string,
): { status: number; body: ApiErrorBody } {
  if (error instanceof DomainError) {
    const body = toApiError(error);
    return { status: HTTP_STATUS[body.code], body };
  }
  const status = clientStatusOf(error);
  if (status !== undefined && status >= 400 && status < 500) {
    const code = CODE_FOR_STATUS[status] ?? 'ERR_INVALID_ARGUMENT';
    return { status, body: { code, message: (error as Error).message } };
  }
  if (error instanceof HttpException && (status === 503 || status === 504)) {
    // Terminus reports a failed readiness check this way; its body says which indicator is down.
    const code = CODE_FOR_STATUS[status] as ApiErrorCode;
    return { status, body: { code, message: error.message, details: error.getResponse() } };
  }
  logger.error({ err: error, route }, 'request failed with an internal error');
  return { status: 500, body: { code: 'ERR_INTERNAL', message: 'internal error' } };
}
