/**
 * Starts a node from its modules (consensus, and the VM host's when it hosts VMs) and serves its
 * API: REST (fastify) with OpenAPI, health and metrics, and the gRPC API. Closing drains the API,
 * then stops migrations, the VM host and consensus in that order (NodeLifecycle).
 */
import 'reflect-metadata';
import type { Server as TlsServer } from 'node:tls';
import type { DynamicModule } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import type { FastifyInstance } from 'fastify';
import pino, { type Logger } from 'pino';
import { Registry } from 'prom-client';
import { buildOpenApiDocument } from './api/openapi-document';
import { type ProposalSource, systemProposalSource } from './api/proposal-source';
import { UNSUPPORTED_BODY, UnparsableBody } from './api/unsupported-body';
import { NodeAppModule } from './app.module';
import { type ListenerTls, listenerTls } from './config/listener-tls';
import { isLoopback, type NodeConfig } from './config/node-config';
import { GrpcApiServer } from './grpc/grpc-api.server';
import { PinoNestLogger } from './logging/pino-nest-logger';
import { NodeLifecycle } from './node-lifecycle';

export interface NodeDeps {
  /** Provides CLUSTER_STORE and LOCAL_NODE: `consensusModule(config)`, or a test's local store. */
  consensus: DynamicModule;
  /** The modules that make this node a VM host (`vmHostModules(config)`); none in API-only tests. */
  host?: readonly DynamicModule[];
  /** Defaults to JSON lines on stdout at config.logLevel. */
  logger?: Logger;
  /** The registry /metrics serves; every module registers its metrics here. */
  registry?: Registry;
  /** Clock and id source for commands; tests may pin it. */
  proposals?: ProposalSource;
  /** Runs last, once the API drained and the node's modules stopped, before logs are flushed (e.g. tracing). */
  beforeShutdown?: () => Promise<void> | void;
}

export interface NodeHandle {
  app: NestFastifyApplication;
  logger: Logger;
  /** The REST API's actual base URL (with the port bound, if config asked for 0). */
  apiUrl: string;
  httpPort: number;
  grpcPort: number;
  /**
   * Stops accepting, drains in-flight requests, stops the node's modules, runs beforeShutdown,
   * flushes logs. The VMs keep running unless `stopVms` (or the config) says to stop them. Idempotent.
   */
  close(options?: { stopVms?: boolean }): Promise<void>;
}

export function createNodeLogger(config: NodeConfig): Logger {
  return pino(
    { level: config.logLevel, base: { node: config.nodeName }, timestamp: pino.stdTimeFunctions.isoTime },
    pino.destination({ dest: 1, sync: false }),
  );
}

/** The document is generated from the contract tables (api/*.contract.ts), the same ones the controllers route by. */
function serveOpenApiDocument(fastify: FastifyInstance): void {
  const document = buildOpenApiDocument();
  for (const path of ['/docs', '/docs/json']) fastify.get(path, (_req, reply) => reply.send(document));
}

export async function startNode(config: NodeConfig, deps: NodeDeps): Promise<NodeHandle> {
  const grpcHost = config.grpcApi.host ?? config.api.host;
  const logger = deps.logger ?? createNodeLogger(config);

  const adapter = new FastifyAdapter({
    // The node's certificate is set below, once consensus has opened (and perhaps created) the cluster.
    ...(isLoopback(config.api.host) ? {} : { https: {} }),
    bodyLimit: 1024 * 1024,
    // An id too long to name anything is a 404 from the API, not fastify's undocumented 414.
    routerOptions: { maxParamLength: 4096 },
    // Our onRequest hook answers while draining (below): fastify's own 503 body has no `code`.
    return503OnClosing: false,
    forceCloseConnections: 'idle',
  });
  const app = await NestFactory.create<NestFastifyApplication>(
    NodeAppModule.forRoot({
      config,
      logger,
      registry: deps.registry ?? new Registry(),
      proposals: deps.proposals ?? systemProposalSource,
      consensus: deps.consensus,
      ...(deps.host ? { host: deps.host } : {}),
    }),
    adapter,
    { logger: new PinoNestLogger(logger), abortOnError: false, bodyParser: false },
  );
  const fastify = app.getHttpAdapter().getInstance() as FastifyInstance;
  fastify.addHook('onResponse', (request, reply, done) => {
    logger.info(
      {
        method: request.method,
        url: request.url,
        status: reply.statusCode,
        ms: Math.round(reply.elapsedTime),
      },
      'request',
    );
    done();
  });
  // While draining, a request on a kept-alive connection gets the API's own 503 body, and every
  // response closes its connection: server.close() waits for kept-alive sockets that go idle only
  // after it started, so the drain would otherwise last until shutdownTimeoutMs.
  let draining = false;
  fastify.addHook('onRequest', (_request, reply, done) => {
    if (!draining) {
      done();
      return;
    }
    void reply
      .code(503)
      .header('connection', 'close')
      .send({ code: 'ERR_UNAVAILABLE', message: 'this node is shutting down; retry through another node' });
  });
  fastify.addHook('onSend', (_request, reply, payload, done) => {
    if (draining) void reply.header('connection', 'close');
    done(null, payload);
  });
  serveOpenApiDocument(fastify);
  // Refusals of a body wait for the guards (see api/unsupported-body.ts).
  fastify.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, _body, done) =>
    done(null, UNSUPPORTED_BODY),
  );
  const parseJson = fastify.getDefaultJsonParser('error', 'error');
  fastify.removeContentTypeParser('application/json');
  fastify.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) =>
    parseJson(request, body.toString(), (error, value) =>
      done(null, error ? new UnparsableBody(error) : value),
    ),
  );

  const grpc = app.get(GrpcApiServer);
  const lifecycle = app.get(NodeLifecycle);
  let httpTls: ListenerTls | undefined;
  try {
    httpTls = listenerTls(config, 'api.host', config.api.host);
    const grpcTls = listenerTls(config, 'grpcApi.host', grpcHost);
    if (httpTls)
      (fastify.server as unknown as TlsServer).setSecureContext({
        cert: httpTls.certPem,
        key: httpTls.keyPem,
      });
    await app.listen(config.api.port, config.api.host);
    await grpc.listen(grpcHost, config.grpcApi.port, grpcTls);
  } catch (e) {
    await grpc.close(0);
    await app.close();
    await lifecycle.close().catch(() => undefined);
    throw e;
  }
  const address = fastify.server.address();
  const httpPort = typeof address === 'object' && address !== null ? address.port : config.api.port;
  const host = config.api.host.includes(':') ? `[${config.api.host}]` : config.api.host;
  const apiUrl = `${httpTls ? 'https' : 'http'}://${host}:${httpPort}`;
  logger.info({ apiUrl, grpcPort: grpc.port }, 'node API listening');

  let closing: Promise<void> | undefined;
  const close = (options: { stopVms?: boolean } = {}): Promise<void> => {
    closing ??= (async () => {
      draining = true;
      logger.info('shutting down: draining requests');
      const timer = setTimeout(() => {
        logger.warn({ timeoutMs: config.shutdownTimeoutMs }, 'drain timed out; closing open connections');
        fastify.server.closeAllConnections?.();
      }, config.shutdownTimeoutMs);
      try {
        await Promise.all([grpc.close(config.shutdownTimeoutMs), app.close()]);
      } finally {
        clearTimeout(timer);
      }
      try {
        await lifecycle.close(options);
      } finally {
        await deps.beforeShutdown?.();
      }
      logger.info('shut down');
      logger.flush();
    })();
    return closing;
  };

  return { app, logger, apiUrl, httpPort, grpcPort: grpc.port, close };
}
