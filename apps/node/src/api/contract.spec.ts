/**
 * The REST contract against the running node: the document lists exactly the routes fastify serves,
 * every handler validates with the very schemas the document was generated from, requests built from
 * the document are accepted or refused by the node as the document says, and real responses parse
 * with the documented schemas under the documented statuses.
 */
import { ROUTE_ARGS_METADATA } from '@nestjs/common/constants';
import { RouteParamtypes } from '@nestjs/common/enums/route-paramtypes.enum';
import Ajv2020 from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestNode, type TestNode } from '../testing/test-node';
import { ClusterController, TokensController } from './cluster.controller';
import { API_OPERATION, type ApiOperation, errorStatuses, routerPath } from './contract';
import { MigrationsController } from './migrations.controller';
import { NodesController } from './nodes.controller';
import { API_OPERATIONS } from './openapi-document';
import { apiErrorBodySchema } from './responses';
import { MAX_LABELS } from './schemas';
import { VmConsoleController } from './vm-console.controller';
import { VmsController } from './vms.controller';
import { ZodPipe } from './zod-pipe';

// biome-ignore lint/suspicious/noExplicitAny: the document and samples are JSON walked by hand.
type Json = any;

let t: TestNode;
let doc: Json;
beforeAll(async () => {
  t = await startTestNode();
  doc = (await t.call('GET', '/docs/json', { role: null })).body;
});
afterAll(async () => {
  await t?.node.close();
});

const METHODS = ['get', 'post', 'put', 'patch', 'delete'] as const;

/** `METHOD /path/{param}` for every operation of the document. */
const documented = (): string[] =>
  Object.entries(doc.paths as Record<string, Json>).flatMap(([path, item]) =>
    METHODS.filter((m) => item[m]).map((m) => `${m.toUpperCase()} ${path}`),
  );

/** The router's table, read from printRoutes ("├── /v1/vms (GET, HEAD, POST)", children indented by 4). */
function served(fastify: FastifyInstance): string[] {
  const stack: string[] = [];
  const out: string[] = [];
  for (const line of fastify.printRoutes({ commonPrefix: false }).split('\n')) {
    const m = /^([│ ]*)[├└]── (\S+)(?: \(([^)]+)\))?$/.exec(line);
    if (!m) continue;
    const depth = (m[1] ?? '').length / 4;
    stack.length = depth;
    stack.push(m[2] ?? '');
    const path = stack.join('').replace(/:(\w+)/g, '{$1}');
    for (const method of (m[3] ?? '').split(', ').filter(Boolean)) out.push(`${method} ${path}`);
  }
  return out;
}

describe('the document lists what the node serves', () => {
  it('every route fastify registers is documented with the same methods, and the reverse', () => {
    const routes = served(t.node.app.getHttpAdapter().getInstance() as FastifyInstance);
    // fastify answers HEAD for every GET by itself; it is not an operation of ours.
    const heads = routes.filter((r) => r.startsWith('HEAD ')).map((r) => r.replace(/^HEAD /, 'GET '));
    const own = routes.filter((r) => !r.startsWith('HEAD '));
    expect(own.filter((r) => heads.includes(r)).length).toBe(heads.length);
    expect(new Set(own)).toEqual(new Set(documented()));
    expect(documented().sort()).toEqual(
      [...API_OPERATIONS.values()].map((op) => `${op.method.toUpperCase()} ${op.path}`).sort(),
    );
  });

  it('security is declared on exactly the routes that check a token', () => {
    for (const [id, op] of API_OPERATIONS) {
      const security = doc.paths[op.path][op.method].security;
      if (op.access === 'public') expect(security, id).toBeUndefined();
      else if (op.access === 'join-token') expect(security, id).toEqual([{ joinToken: [] }]);
      else expect(security, id).toEqual([{ bearerAuth: [] }]);
    }
    expect(doc.security).toBeUndefined();
  });

  it('every operation documents each error status with the ApiErrorBody schema', () => {
    for (const [id, op] of API_OPERATIONS) {
      const responses = doc.paths[op.path][op.method].responses;
      expect(Object.keys(responses).map(Number).sort(), id).toEqual(
        [op.success.status, ...errorStatuses(op).keys()].sort(),
      );
      for (const status of errorStatuses(op).keys()) {
        expect(responses[status].content['application/json'].schema, `${id} ${status}`).toEqual({
          $ref: '#/components/schemas/ApiErrorBody',
        });
      }
    }
  });
});

describe('handlers validate with the schemas the document was generated from', () => {
  const controllers = [
    NodesController,
    VmsController,
    VmConsoleController,
    MigrationsController,
    ClusterController,
    TokensController,
  ];
  const PART = {
    [RouteParamtypes.BODY]: 'body',
    [RouteParamtypes.QUERY]: 'query',
    [RouteParamtypes.PARAM]: 'params',
  };

  it('each contract operation of /v1 has one handler, whose pipes hold its very schemas', () => {
    const implemented = new Set<ApiOperation>();
    for (const controller of controllers) {
      for (const name of Object.getOwnPropertyNames(controller.prototype)) {
        if (name === 'constructor') continue;
        const handler = controller.prototype[name as keyof typeof controller.prototype];
        const op: ApiOperation | undefined = Reflect.getMetadata(API_OPERATION, handler);
        if (op === undefined) continue;
        expect(implemented.has(op), `${controller.name}.${name}`).toBe(false);
        implemented.add(op);
        const args: Record<string, { pipes?: unknown[] }> =
          Reflect.getMetadata(ROUTE_ARGS_METADATA, controller, name) ?? {};
        const validated: Record<string, unknown> = {};
        for (const [key, arg] of Object.entries(args)) {
          const part = PART[Number(key.split(':')[0]) as keyof typeof PART];
          const pipe = arg.pipes?.find((p) => p instanceof ZodPipe) as ZodPipe<never> | undefined;
          if (part && pipe) validated[part] = pipe.schema;
        }
        const declared = Object.fromEntries(
          (['body', 'query', 'params'] as const).filter((k) => op[k]).map((k) => [k, op[k]]),
        );
        expect(validated, `${controller.name}.${name}`).toEqual(declared);
        for (const [k, schema] of Object.entries(validated)) {
          expect(schema === declared[k], `${controller.name}.${name} ${k} is the contract's object`).toBe(
            true,
          );
        }
      }
    }
    const v1 = [...API_OPERATIONS.values()].filter((op) => op.path.startsWith('/v1/'));
    expect(v1.filter((op) => !implemented.has(op)).map((op) => `${op.method} ${op.path}`)).toEqual([]);
  });
});

/** Resolves `$ref`s of the document, shallowly. */
const deref = (schema: Json): Json =>
  schema?.$ref ? deref(doc.components.schemas[schema.$ref.split('/').pop()]) : schema;

const nonNull = (type: unknown): string | undefined =>
  Array.isArray(type) ? type.find((x) => x !== 'null') : (type as string | undefined);

/** A value the document's schema accepts: its example, else one built from its keywords. */
function sample(raw: Json, full: boolean): Json {
  const schema = deref(raw);
  if (schema.example !== undefined) return schema.example;
  if (schema.enum) return schema.enum[schema.enum.length - 1];
  switch (nonNull(schema.type)) {
    case 'object': {
      const out: Record<string, Json> = {};
      for (const [key, prop] of Object.entries(schema.properties ?? {})) {
        if (full || schema.required?.includes(key)) out[key] = sample(prop, full);
      }
      if (schema.additionalProperties && typeof schema.additionalProperties === 'object' && full) {
        out[sample(schema.propertyNames ?? { type: 'string' }, full)] = sample(
          schema.additionalProperties,
          full,
        );
      }
      return out;
    }
    case 'string':
      if (schema.format === 'uri') return 'http://127.0.0.1:7799';
      if (schema.pattern)
        throw new Error(`give ${JSON.stringify(schema)} an example: its pattern alone makes none`);
      return 'x'.repeat(Math.max(1, schema.minLength ?? 1));
    case 'integer':
    case 'number':
      return schema.minimum ?? 1;
    case 'boolean':
      return true;
    case 'array':
      return [sample(schema.items, full)];
    default:
      throw new Error(`no sample for ${JSON.stringify(schema)}`);
  }
}

/** Values the document's schema refuses, each with what is wrong with it. */
function violations(raw: Json, valid: Json): [string, Json][] {
  const schema = deref(raw);
  const out: [string, Json][] = [];
  const type = nonNull(schema.type);
  if (schema.enum) out.push(['not in the enum', 'not-a-member']);
  if (type === 'string') {
    out.push(['a number for a string', 12]);
    if (schema.maxLength !== undefined) out.push(['too long', 'x'.repeat(schema.maxLength + 1)]);
    if (schema.minLength) out.push(['too short', '']);
    if (schema.pattern && !new RegExp(schema.pattern, 'u').test('!')) out.push(['off the pattern', '!']);
  }
  if (type === 'integer' || type === 'number') {
    out.push(['a string for a number', String(valid)]);
    if (type === 'integer') out.push(['a fraction', (schema.minimum ?? 1) + 0.5]);
    if (schema.minimum !== undefined) out.push(['below the minimum', schema.minimum - 1]);
    if (schema.maximum !== undefined) out.push(['above the maximum', schema.maximum + 1]);
  }
  if (type === 'object') {
    out.push(['an array for an object', []]);
    if (schema.additionalProperties === false) out.push(['an unknown property', { ...valid, colour: 'red' }]);
    for (const key of schema.required ?? []) {
      const { [key]: _dropped, ...rest } = valid;
      out.push([`without ${key}`, rest]);
    }
    for (const [key, prop] of Object.entries(schema.properties ?? {})) {
      if (valid[key] === undefined) continue;
      for (const [why, bad] of violations(prop, valid[key]))
        out.push([`${key}: ${why}`, { ...valid, [key]: bad }]);
    }
    if (schema.propertyNames?.pattern) out.push(['a key off the pattern', { '!bad key': 'v' }]);
    if (schema.maxProperties !== undefined) {
      const many = Object.fromEntries(
        Array.from({ length: schema.maxProperties + 1 }, (_, i) => [`k${i}`, 'v']),
      );
      out.push(['too many properties', many]);
    }
  }
  return out;
}

/** A concrete path for the operation: ids of nothing (so a valid request ends in 404, not in a change). */
const concrete = (path: string): string => path.replace('{id}', 'nothing-here');

const tokenFor = (op: ApiOperation) => (op.access === 'join-token' ? { token: 'Bearer join-secret' } : {});

describe('requests built from the document meet the node as the document says', () => {
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats(ajv);
  const validator = (schema: Json) => ajv.compile({ ...schema, components: doc.components });

  it('bodies: valid samples are not refused with 400, and each violation is (the document agrees on both)', async () => {
    let checked = 0;
    for (const [id, op] of API_OPERATIONS) {
      const requestBody = doc.paths[op.path][op.method].requestBody;
      if (!requestBody) continue;
      const schema = requestBody.content['application/json'].schema;
      const isValid = validator(schema);
      for (const full of [false, true]) {
        const body = sample(schema, full);
        expect(isValid(body), `${id}: the sample is valid by the document`).toBe(true);
        expect(op.body?.safeParse(body).success, `${id}: zod accepts ${JSON.stringify(body)}`).toBe(true);
        const r = await t.call(op.method.toUpperCase(), concrete(op.path), { body, ...tokenFor(op) });
        expect(r.status, `${id} ${JSON.stringify(body)} → ${JSON.stringify(r.body)}`).not.toBe(400);
        expect(r.status, id).toBeLessThan(500);
      }
      for (const [why, body] of violations(schema, sample(schema, true))) {
        expect(isValid(body), `${id} ${why}: the document refuses it`).toBe(false);
        const r = await t.call(op.method.toUpperCase(), concrete(op.path), { body, ...tokenFor(op) });
        expect(r.status, `${id} ${why}: ${JSON.stringify(body)}`).toBe(400);
        checked++;
      }
      if (requestBody.required) {
        const r = await t.call(op.method.toUpperCase(), concrete(op.path), tokenFor(op));
        expect(r.status, `${id} without a body`).toBe(400);
      } else {
        const r = await t.call(op.method.toUpperCase(), concrete(op.path), tokenFor(op));
        expect(r.status, `${id} without its optional body`).not.toBe(400);
      }
    }
    expect(checked).toBeGreaterThan(50);
  });

  it('query parameters: documented values pass, others are 400', async () => {
    for (const [id, op] of API_OPERATIONS) {
      for (const param of doc.paths[op.path][op.method].parameters ?? []) {
        if (param.in !== 'query') continue;
        const schema = param.schema;
        const isValid = validator(schema);
        const good = schema.enum ?? [schema.minimum, schema.maximum, schema.default];
        for (const value of good) {
          expect(isValid(value), `${id} ${param.name}=${value}`).toBe(true);
          const r = await t.call('GET', `${concrete(op.path)}?${param.name}=${value}`);
          expect(r.status, `${id} ${param.name}=${value}`).not.toBe(400);
        }
        const bad = schema.enum ? ['eventual'] : [schema.minimum - 1, schema.maximum + 1, 'abc'];
        for (const value of bad) {
          const r = await t.call('GET', `${concrete(op.path)}?${param.name}=${value}`);
          expect(r.status, `${id} ${param.name}=${value}`).toBe(400);
        }
      }
    }
  });

  it(`labels: ${MAX_LABELS} pass and one more is refused, as maxProperties says`, async () => {
    const labels = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, 'v']));
    const body = (n: number) => ({
      name: `many-${n}`,
      image: 'debian-12',
      vcpus: 1,
      memoryMiB: 1,
      labels: labels(n),
    });
    expect((await t.call('POST', '/v1/vms', { body: body(MAX_LABELS) })).status).toBe(201);
    expect((await t.call('POST', '/v1/vms', { body: body(MAX_LABELS + 1) })).status).toBe(400);
    expect(deref(doc.components.schemas.CreateVmRequest).properties.labels.maxProperties).toBe(MAX_LABELS);
  });
});

describe('methods a known path does not serve', () => {
  it('are 405 with Allow and the error body; unknown paths stay 404', async () => {
    for (const [method, path, allow] of [
      ['PUT', '/v1/vms/vm-x', 'GET, HEAD, DELETE'],
      ['DELETE', '/v1/cluster/status', 'GET, HEAD'],
      ['POST', '/health/live', 'GET, HEAD'],
      ['PATCH', '/docs/json', 'GET, HEAD'],
    ] as const) {
      const res = await fetch(`${t.node.apiUrl}${path}`, { method });
      expect(res.status, `${method} ${path}`).toBe(405);
      expect(res.headers.get('allow')).toBe(allow);
      expect(apiErrorBodySchema.parse(await res.json())).toMatchObject({ code: 'ERR_METHOD_NOT_ALLOWED' });
    }
    const unknown = await t.call('PUT', '/v1/nothing');
    expect(unknown).toMatchObject({ status: 404, body: { code: 'ERR_NOT_FOUND' } });
  });

  it('are 405 even when fastify refuses the request before routing ends (QUERY without a body type)', async () => {
    const res = await fetch(`${t.node.apiUrl}/health/ready`, { method: 'QUERY' });
    expect(res.status).toBe(405);
  });
});

/** The operation a concrete request lands on. */
function operationOf(method: string, path: string): [string, ApiOperation] {
  const bare = path.split('?')[0] ?? '';
  for (const entry of API_OPERATIONS) {
    const pattern = new RegExp(`^${routerPath(entry[1].path).replace(/:\w+/g, '[^/]+')}$`);
    if (entry[1].method === method.toLowerCase() && pattern.test(bare)) return entry;
  }
  throw new Error(`no operation for ${method} ${path}`);
}

describe('real responses parse with the documented schemas', () => {
  /** Calls the node and checks the answer against the operation's documented responses. */
  async function call(method: string, path: string, init: Parameters<TestNode['call']>[2] = {}) {
    const [id, op] = operationOf(method, path);
    const r = await t.call(method, path, init);
    if (r.status === op.success.status) {
      const parsed = op.success.schema.safeParse(r.body);
      expect(parsed.success, `${id} ${JSON.stringify(r.body)}: ${parsed.error?.message}`).toBe(true);
    } else {
      expect([...errorStatuses(op).keys()], `${id} answered ${r.status}`).toContain(r.status);
      apiErrorBodySchema.parse(r.body);
    }
    return r;
  }

  it('for every operation, in a run that touches each record kind', async () => {
    const vm = await call('POST', '/v1/vms', {
      body: {
        name: 'shape-1',
        image: 'debian-12',
        vcpus: 1,
        memoryMiB: 256,
        labels: { app: 'web' },
        nodeId: 'node-1',
      },
    });
    expect(vm.status).toBe(201);
    const vmId = vm.body.id;
    const calls: [string, string, Parameters<TestNode['call']>[2]?][] = [
      ['GET', '/v1/nodes'],
      ['GET', '/v1/nodes/node-1?consistency=local'],
      ['GET', '/v1/vms'],
      ['GET', `/v1/vms/${vmId}`],
      ['PATCH', `/v1/vms/${vmId}/labels`, { body: { set: { tier: '1' }, expect: { app: 'web' } } }],
      ['GET', `/v1/vms/${vmId}/console`],
      ['POST', `/v1/vms/${vmId}/start`],
      ['GET', '/v1/cluster/status'],
      ['GET', '/v1/cluster/members'],
      ['GET', '/v1/cluster/leader'],
      ['POST', '/v1/cluster/join', { token: 'Bearer join-secret' }],
      ['GET', '/v1/tokens'],
      ['GET', '/health/live', { role: null }],
      ['GET', '/health/ready', { role: null }],
      ['GET', '/docs', { role: null }],
    ];
    for (const [method, path, init] of calls) await call(method, path, init);
    const migration = await call('POST', '/v1/migrations', {
      body: { vmId, targetNodeId: 'node-2', maxBandwidthBytesPerSec: 1 << 20 },
    });
    expect(migration.status).toBe(201);
    await call('GET', '/v1/migrations');
    await call('GET', `/v1/migrations/${migration.body.id}`);
    expect(
      (await call('POST', `/v1/migrations/${migration.body.id}/cancel`, { body: { reason: 'shape' } }))
        .status,
    ).toBe(200);
    await call('POST', `/v1/migrations/${migration.body.id}/cancel`);
    await call('POST', `/v1/vms/${vmId}/stop`);
    await call('DELETE', `/v1/vms/${vmId}`);
    const token = await call('POST', '/v1/tokens', { body: { name: 'shape', role: 'viewer' } });
    expect(token.status).toBe(201);
    await call('DELETE', `/v1/tokens/${token.body.id}`);
    await call('POST', '/v1/nodes/node-2/drain');
    await call('GET', '/v1/vms', { role: null });
    await call('POST', '/v1/nodes/node-2/drain', { role: 'operator' });
    const metrics = await t.call('GET', '/metrics', { role: null });
    expect(typeof metrics.body).toBe('string');
  });
});
