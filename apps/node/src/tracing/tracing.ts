/**
 * OpenTelemetry for the node process, started before Nest and consensus so their first spans
 * are recorded. Spans go to an OTLP/HTTP collector when one is configured (`tracing.otlpEndpoint`
 * or the standard OTEL_EXPORTER_OTLP_ENDPOINT); otherwise tracing stays a no-op.
 */
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';

export interface Tracing {
  /** Flushes and stops the exporter (called last at shutdown). */
  shutdown(): Promise<void>;
}

export function startTracing(nodeName: string, endpoint: string | undefined): Tracing {
  const url = endpoint ?? process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
  if (!url) return { shutdown: async () => undefined };
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ 'service.name': 'dwcp-node', 'service.instance.id': nodeName }),
    spanProcessors: [
      new BatchSpanProcessor(new OTLPTraceExporter({ url: new URL('/v1/traces', url).toString() })),
    ],
  });
  provider.register();
  return { shutdown: () => provider.shutdown() };
}
