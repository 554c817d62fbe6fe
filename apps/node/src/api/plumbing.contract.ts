/**
 * The node's open endpoints: health (health/health.controller.ts), metrics (metrics/metrics.module.ts)
 * and this document (start-node.ts). None takes input, so nothing here is validated; they are in the
 * contract so that the document lists every route the node serves.
 */
import type { ApiOperation } from './contract';
import { healthSchema } from './responses';
import { z } from './zod-openapi';

const openApiDocument = z
  .object({ openapi: z.string() })
  .passthrough()
  .openapi('OpenApiDocument', { description: 'This document.' });

const docs = (path: string): ApiOperation => ({
  method: 'get',
  path,
  tag: 'node',
  summary: 'The OpenAPI document of this API',
  access: 'public',
  success: { status: 200, description: 'The OpenAPI 3.1 document.', schema: openApiDocument },
  errors: {},
});

export const plumbingOperations = {
  live: {
    method: 'get',
    path: '/health/live',
    tag: 'health',
    summary: 'Liveness: the process serves requests',
    access: 'public',
    success: { status: 200, description: 'Serving.', schema: healthSchema },
    errors: {},
  },
  ready: {
    method: 'get',
    path: '/health/ready',
    tag: 'health',
    summary: 'Readiness: this node knows a Raft leader',
    access: 'public',
    success: { status: 200, description: 'A leader is known.', schema: healthSchema },
    errors: { 503: 'No leader is known; `details` holds the failed indicators.' },
  },
  metrics: {
    method: 'get',
    path: '/metrics',
    tag: 'node',
    summary: 'Prometheus metrics (text exposition format)',
    access: 'public',
    success: {
      status: 200,
      description: 'The metrics.',
      schema: z.string(),
      contentType: 'text/plain; version=0.0.4; charset=utf-8',
    },
    errors: {},
  },
  docs: docs('/docs'),
  docsJson: docs('/docs/json'),
} satisfies Record<string, ApiOperation>;
