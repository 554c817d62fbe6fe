/** The OpenAPI 3.1 document of the REST API, generated from the contract tables (served at /docs/json). */
import { OpenAPIRegistry, OpenApiGeneratorV31, type RouteConfig } from '@asteasolutions/zod-to-openapi';
import { clusterOperations } from './cluster.contract';
import { type ApiOperation, BODY_METHODS, errorStatuses } from './contract';
import { migrationOperations } from './migrations.contract';
import { nodeOperations } from './nodes.contract';
import { plumbingOperations } from './plumbing.contract';
import { apiErrorBodySchema } from './responses';
import { tokenOperations } from './tokens.contract';
import { vmOperations } from './vms.contract';

const TABLES = {
  nodes: nodeOperations,
  vms: vmOperations,
  migrations: migrationOperations,
  cluster: clusterOperations,
  tokens: tokenOperations,
  node: plumbingOperations,
} satisfies Record<string, Record<string, ApiOperation>>;

/** Every operation the node serves over HTTP, each named `<table>.<key>` (its operationId). */
export const API_OPERATIONS: ReadonlyMap<string, ApiOperation> = new Map(
  Object.entries(TABLES).flatMap(([table, ops]) =>
    Object.entries(ops).map(([key, op]) => [`${table}.${key}`, op as ApiOperation] as const),
  ),
);

const JSON_TYPE = 'application/json';

function routeConfig(operationId: string, op: ApiOperation): RouteConfig {
  const errors = Object.fromEntries(
    [...errorStatuses(op)].map(([status, description]) => [
      status,
      { description, content: { [JSON_TYPE]: { schema: apiErrorBodySchema } } },
    ]),
  );
  return {
    operationId,
    method: op.method,
    path: op.path,
    tags: [op.tag],
    summary: op.summary,
    ...(op.body === undefined && BODY_METHODS.has(op.method)
      ? { description: 'Takes no request body; one that is sent is not read.' }
      : {}),
    ...(op.access === 'public'
      ? {}
      : { security: [op.access === 'join-token' ? { joinToken: [] } : { bearerAuth: [] }] }),
    request: {
      ...(op.params ? { params: op.params } : {}),
      ...(op.query ? { query: op.query } : {}),
      ...(op.body
        ? {
            body: {
              // What zod says: a schema that accepts `undefined` makes the body optional.
              required: !op.body.isOptional(),
              content: { [JSON_TYPE]: { schema: op.body } },
            },
          }
        : {}),
    },
    responses: {
      [op.success.status]: {
        description: op.success.description,
        content: { [op.success.contentType ?? JSON_TYPE]: { schema: op.success.schema } },
      },
      ...errors,
    },
  };
}

export function buildOpenApiDocument(): ReturnType<OpenApiGeneratorV31['generateDocument']> {
  const registry = new OpenAPIRegistry();
  registry.registerComponent('securitySchemes', 'bearerAuth', {
    type: 'http',
    scheme: 'bearer',
    description: 'An API token (`dwcp token create`, or the admin token `cluster init` wrote).',
  });
  registry.registerComponent('securitySchemes', 'joinToken', {
    type: 'http',
    scheme: 'bearer',
    description:
      "The cluster's join token (`<dataDir>/cluster/join.token` on the node that ran `cluster init`).",
  });
  for (const [operationId, op] of API_OPERATIONS) registry.registerPath(routeConfig(operationId, op));
  return new OpenApiGeneratorV31(registry.definitions).generateDocument({
    openapi: '3.1.0',
    info: {
      title: 'NovaCron DWCP node API',
      version: '0.1.0',
      description:
        'Nodes, VMs and live migrations of a DWCP cluster. Authenticate with `Authorization: Bearer <token>`. ' +
        'Every error answers with an ApiErrorBody; a method a path does not serve is 405 with `Allow`.',
    },
  });
}
