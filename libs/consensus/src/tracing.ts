/** OpenTelemetry spans of ACP's long operations (commit, linearizable read, admission). */
import { type Attributes, type Span, SpanStatusCode, trace } from '@opentelemetry/api';

const tracer = trace.getTracer('dwcp-acp');

/** Runs `f` inside an active span named `name`; an exception marks the span as failed and is rethrown. */
export function traced<T>(name: string, attributes: Attributes, f: (span: Span) => Promise<T>): Promise<T> {
  return tracer.startActiveSpan(name, { attributes }, async (span) => {
    try {
      return await f(span);
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      span.setStatus({ code: SpanStatusCode.ERROR, message: (e as Error).message });
      if (typeof code === 'string') span.setAttribute('dwcp.error.code', code);
      throw e;
    } finally {
      span.end();
    }
  });
}
