/**
 * GET /metrics (Prometheus text) and the per-request series. /metrics needs no token: Prometheus
 * scrapes it without credentials, and it holds counters and latencies, no cluster records.
 */
import { Controller, Get, Header, Inject, Module, type OnModuleInit } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import { Public } from '../auth/roles';
import { METRICS_REGISTRY } from '../tokens';
import { ApiMetrics } from './api-metrics';

@Public()
@Controller('metrics')
export class MetricsController {
  constructor(@Inject(METRICS_REGISTRY) private readonly registry: Registry) {}

  @Get()
  @Header('content-type', 'text/plain; version=0.0.4; charset=utf-8')
  scrape(): Promise<string> {
    return this.registry.metrics();
  }
}

@Module({
  controllers: [MetricsController],
  providers: [
    { provide: ApiMetrics, useFactory: (r: Registry) => new ApiMetrics(r), inject: [METRICS_REGISTRY] },
  ],
  exports: [ApiMetrics],
})
export class MetricsModule implements OnModuleInit {
  constructor(
    @Inject(HttpAdapterHost) private readonly adapterHost: HttpAdapterHost,
    @Inject(ApiMetrics) private readonly metrics: ApiMetrics,
  ) {}

  /** A fastify hook, not an interceptor, so that 404s, bad JSON and guard refusals are counted too. */
  onModuleInit(): void {
    const fastify = this.adapterHost.httpAdapter?.getInstance() as FastifyInstance | undefined;
    if (!fastify) return;
    fastify.addHook('onResponse', (request, reply, done) => {
      const route = request.routeOptions.url ?? 'unmatched';
      this.metrics.observe(route, request.method, reply.statusCode, reply.elapsedTime / 1000);
      done();
    });
  }
}
