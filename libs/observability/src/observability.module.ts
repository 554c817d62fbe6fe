/**
 * The process-wide metrics registry and logger, as providers every module injects: each
 * component registers its `dwcp_<component>_*` metrics in the one registry that /metrics serves.
 */
import { type DynamicModule, Global, Module } from '@nestjs/common';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';

/** The prom-client Registry that /metrics serves. */
export const METRICS_REGISTRY = Symbol.for('dwcp.MetricsRegistry');
/** The node's pino logger. */
export const LOGGER = Symbol.for('dwcp.Logger');

export interface ObservabilityOptions {
  registry: Registry;
  logger: Logger;
}

@Global()
@Module({})
// biome-ignore lint/complexity/noStaticOnlyClass: a Nest dynamic module is a class with a static forRoot.
export class ObservabilityModule {
  static forRoot(options: ObservabilityOptions): DynamicModule {
    const providers = [
      { provide: METRICS_REGISTRY, useValue: options.registry },
      { provide: LOGGER, useValue: options.logger },
    ];
    return { module: ObservabilityModule, providers, exports: [METRICS_REGISTRY, LOGGER] };
  }
}
