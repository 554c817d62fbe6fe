/**
 * The global exception filter: every error leaves as the API's error body with its mapped status. A
 * request the router matched by path but not by method is 405 with `Allow`, not 404.
 */
import { type ArgumentsHost, Catch, type ExceptionFilter, Inject } from '@nestjs/common';
import type { FastifyReply, FastifyRequest, HTTPMethods } from 'fastify';
import type { Logger } from 'pino';
import { LOGGER } from '../tokens';
import { type ApiErrorBody, HTTP_STATUS } from './errors';
import { httpErrorResponse } from './http-errors';

const METHODS: readonly HTTPMethods[] = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];

/** The methods the router serves at this request's path; none when the path itself is unknown. */
function allowedMethods(request: FastifyRequest, path: string): HTTPMethods[] {
  return METHODS.filter((method) => request.server.findRoute({ method, url: path }) !== null);
}

@Catch()
export class ApiExceptionFilter implements ExceptionFilter {
  constructor(@Inject(LOGGER) private readonly logger: Logger) {}

  catch(error: unknown, host: ArgumentsHost): void {
    const http = host.switchToHttp();
    const request = http.getRequest<FastifyRequest>();
    const reply = http.getResponse<FastifyReply>();
    // No route matched, so whatever went wrong (fastify may refuse the body first) the answer is about the route.
    if (request.is404) {
      const path = request.url.split('?', 1)[0] ?? '';
      const allow = allowedMethods(request, path);
      const body: ApiErrorBody =
        allow.length > 0
          ? {
              code: 'ERR_METHOD_NOT_ALLOWED',
              message: `${request.method} is not served at ${path}; it serves ${allow.join(', ')}`,
            }
          : { code: 'ERR_NOT_FOUND', message: `no such route: ${request.method} ${path}` };
      if (allow.length > 0) void reply.header('allow', allow.join(', '));
      void reply.status(HTTP_STATUS[body.code]).send(body);
      return;
    }
    const { status, body } = httpErrorResponse(error, this.logger, `${request.method} ${request.url}`);
    void reply.status(status).send(body);
  }
}
