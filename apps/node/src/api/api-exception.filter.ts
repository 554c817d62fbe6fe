/** The global exception filter: every error leaves as `{ code, message, fields? }` with its mapped status. */
import { type ArgumentsHost, Catch, type ExceptionFilter, Inject } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { LOGGER } from '../tokens';
import { httpErrorResponse } from './http-errors';

@Catch()
export class ApiExceptionFilter implements ExceptionFilter {
  constructor(@Inject(LOGGER) private readonly logger: Logger) {}

  catch(error: unknown, host: ArgumentsHost): void {
    const http = host.switchToHttp();
    const request = http.getRequest<FastifyRequest>();
    const reply = http.getResponse<FastifyReply>();
    const { status, body } = httpErrorResponse(error, this.logger, `${request.method} ${request.url}`);
    void reply.status(status).send(body);
  }
}
