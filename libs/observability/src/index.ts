/** @novacron/observability: the node's metrics registry and logger as injectable providers. */
export {
  LOGGER,
  METRICS_REGISTRY,
  ObservabilityModule,
  type ObservabilityOptions,
} from './observability.module';
