/**
 * The public gRPC API (proto/dwcp/api/v1) on @grpc/grpc-js, beside grpc.health.v1. Same operations,
 * bearer tokens (metadata `authorization`), roles and error codes as REST; see api/errors.ts for how
 * codes map to gRPC statuses (a conflict is FAILED_PRECONDITION).
 */
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { Inject, Injectable } from '@nestjs/common';
import type { ClusterStore, Role } from '@novacron/cluster-state';
import { HealthImplementation, type ServingStatus } from 'grpc-health-check';
import type { Logger } from 'pino';
import { ControlPlaneService } from '../api/control-plane.service';
import { GRPC_STATUS, toApiError } from '../api/errors';
import {
  cancelMigrationSchema,
  createMigrationSchema,
  createVmSchema,
  updateLabelsSchema,
  validate,
} from '../api/schemas';
import { Authenticator } from '../auth/authenticator';
import type { ListenerTls } from '../config/listener-tls';
import { CLUSTER_STORE, LOGGER } from '../tokens';
import { API_GRPC_OPTIONS, API_SERVICES, type ApiServiceName } from './grpc-options';
import {
  consistencyOf,
  disksFromProto,
  memberToProto,
  migrationToProto,
  nodeToProto,
  optionalString,
  statusToProto,
  vmToProto,
} from './proto-mapping';

type Msg = Record<string, unknown>;
type Method = { role: Role; run: (request: Msg) => Promise<unknown> };

const str = (v: unknown): string => (typeof v === 'string' ? v : '');
const stringMap = (v: unknown): Record<string, string> =>
  v && typeof v === 'object' ? (v as Record<string, string>) : {};
const stringList = (v: unknown): string[] => (Array.isArray(v) ? v.map(String) : []);
const isSet = (v: unknown): boolean => v !== undefined && v !== null;

/** CreateMigrationRequest's policy fields, as the REST body's `policy` (absent when neither is set). */
function policyOf(r: Record<string, unknown>): { policy?: Record<string, unknown> } {
  const policy = {
    ...(isSet(r.auto_converge) ? { autoConverge: r.auto_converge } : {}),
    ...(isSet(r.completion_timeout_per_gib_sec)
      ? { completionTimeoutPerGiBSec: Number(r.completion_timeout_per_gib_sec) }
      : {}),
  };
  return Object.keys(policy).length > 0 ? { policy } : {};
}

@Injectable()
export class GrpcApiServer {
  private readonly server = new grpc.Server();
  private readonly health = new HealthImplementation({ '': 'NOT_SERVING' });
  private healthTimer: NodeJS.Timeout | undefined;
  private boundPort = 0;

  constructor(
    @Inject(ControlPlaneService) private readonly cp: ControlPlaneService,
    @Inject(Authenticator) private readonly auth: Authenticator,
    @Inject(CLUSTER_STORE) private readonly store: ClusterStore,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {
    const definition = loadSync([...API_GRPC_OPTIONS.protoPath], API_GRPC_OPTIONS.loader);
    const loaded = grpc.loadPackageDefinition(definition) as unknown as Record<
      string,
      Record<string, Record<string, grpc.GrpcObject>>
    >;
    const pkg = loaded.dwcp?.api?.v1 as Record<string, grpc.ServiceClientConstructor>;
    const handlers = this.handlers();
    for (const name of API_SERVICES) {
      const service = pkg[name];
      if (!service) throw new Error(`${API_GRPC_OPTIONS.package}.${name} missing from the proto files`);
      const impl: grpc.UntypedServiceImplementation = {};
      for (const [method, spec] of Object.entries(handlers[name]))
        impl[method] = this.unary(name, method, spec);
      this.server.addService(service.service, impl);
    }
    this.health.addToServer(this.server);
  }

  get port(): number {
    return this.boundPort;
  }

  async listen(host: string, port: number, tls: ListenerTls | undefined): Promise<number> {
    const credentials = tls
      ? grpc.ServerCredentials.createSsl(
          null,
          [{ private_key: Buffer.from(tls.keyPem), cert_chain: Buffer.from(tls.certPem) }],
          false,
        )
      : grpc.ServerCredentials.createInsecure();
    const address = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
    this.boundPort = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync(address, credentials, (err, bound) => (err ? reject(err) : resolve(bound))),
    );
    this.refreshHealth();
    this.healthTimer = setInterval(() => this.refreshHealth(), 1000);
    this.healthTimer.unref();
    return this.boundPort;
  }

  /** Lets in-flight calls finish for up to `timeoutMs`, then cancels the rest. */
  async close(timeoutMs: number): Promise<void> {
    clearInterval(this.healthTimer);
    this.setAll('NOT_SERVING');
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, timeoutMs);
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** The process serves ('' is SERVING) once bound; each API service serves while a leader is known. */
  private refreshHealth(): void {
    const serving: ServingStatus = this.store.status().leaderRaftId === null ? 'NOT_SERVING' : 'SERVING';
    this.health.setStatus('', 'SERVING');
    for (const name of API_SERVICES) this.health.setStatus(`${API_GRPC_OPTIONS.package}.${name}`, serving);
  }

  private setAll(status: ServingStatus): void {
    this.health.setStatus('', status);
    for (const name of API_SERVICES) this.health.setStatus(`${API_GRPC_OPTIONS.package}.${name}`, status);
  }

  private unary(service: ApiServiceName, method: string, spec: Method): grpc.handleUnaryCall<Msg, unknown> {
    return (call, callback) => {
      const run = async () => {
        const header = call.metadata.get('authorization')[0];
        const caller = await this.auth.authenticate(typeof header === 'string' ? header : undefined);
        this.auth.authorize(caller, spec.role);
        return spec.run(call.request);
      };
      run().then(
        (response) => callback(null, response),
        (error: unknown) => {
          const body = toApiError(error);
          if (body.code === 'ERR_INTERNAL')
            this.logger.error({ err: error, service, method }, 'gRPC call failed');
          const metadata = new grpc.Metadata();
          metadata.set('dwcp-error-code', body.code);
          if (body.fields) metadata.set('dwcp-error-fields', JSON.stringify(body.fields));
          callback({ code: GRPC_STATUS[body.code], details: body.message, metadata });
        },
      );
    };
  }

  private handlers(): Record<ApiServiceName, Record<string, Method>> {
    const cp = this.cp;
    const list = <T>(items: T[], map: (t: T) => Msg) => ({ items: items.map(map) });
    return {
      NodeService: {
        ListNodes: {
          role: 'viewer',
          run: async (r) => list(await cp.listNodes(consistencyOf(r)), nodeToProto),
        },
        GetNode: {
          role: 'viewer',
          run: async (r) => nodeToProto(await cp.getNode(str(r.id), consistencyOf(r))),
        },
        DrainNode: { role: 'admin', run: async (r) => nodeToProto(await cp.drainNode(str(r.id))) },
        RemoveNode: { role: 'admin', run: async (r) => nodeToProto(await cp.removeNode(str(r.id))) },
      },
      VmService: {
        CreateVm: {
          role: 'operator',
          run: async (r) => {
            const nodeId = optionalString(r.node_id);
            const body = validate(
              createVmSchema,
              {
                name: r.name,
                image: r.image,
                vcpus: r.vcpus,
                memoryMiB: r.memory_mib,
                labels: stringMap(r.labels),
                ...(isSet(r.disks) && (r.disks as unknown[]).length > 0
                  ? { disks: disksFromProto(r.disks) }
                  : {}),
                ...(nodeId !== undefined ? { nodeId } : {}),
              },
              'request',
            );
            return vmToProto(await cp.createVm(body));
          },
        },
        ListVms: { role: 'viewer', run: async (r) => list(await cp.listVms(consistencyOf(r)), vmToProto) },
        GetVm: { role: 'viewer', run: async (r) => vmToProto(await cp.getVm(str(r.id), consistencyOf(r))) },
        StartVm: { role: 'operator', run: async (r) => vmToProto(await cp.startVm(str(r.id))) },
        StopVm: { role: 'operator', run: async (r) => vmToProto(await cp.stopVm(str(r.id))) },
        DeleteVm: { role: 'operator', run: async (r) => vmToProto(await cp.deleteVm(str(r.id))) },
        UpdateVmLabels: {
          role: 'operator',
          run: async (r) => {
            const set: Record<string, string | null> = { ...stringMap(r.set) };
            for (const key of stringList(r.remove)) set[key] = null;
            const expect: Record<string, string | null> = { ...stringMap(r.expect) };
            for (const key of stringList(r.expect_absent)) expect[key] = null;
            const body = validate(
              updateLabelsSchema,
              { set, ...(Object.keys(expect).length > 0 ? { expect } : {}) },
              'request',
            );
            return vmToProto(await cp.updateVmLabels(str(r.id), body));
          },
        },
      },
      MigrationService: {
        CreateMigration: {
          role: 'operator',
          run: async (r) => {
            const body = validate(
              createMigrationSchema,
              {
                vmId: r.vm_id,
                targetNodeId: r.target_node_id,
                ...(r.max_bandwidth_bytes_per_sec !== undefined && r.max_bandwidth_bytes_per_sec !== null
                  ? { maxBandwidthBytesPerSec: Number(r.max_bandwidth_bytes_per_sec) }
                  : {}),
                ...policyOf(r),
              },
              'request',
            );
            return migrationToProto(await cp.createMigration(body));
          },
        },
        ListMigrations: {
          role: 'viewer',
          run: async (r) => list(await cp.listMigrations(consistencyOf(r)), migrationToProto),
        },
        GetMigration: {
          role: 'viewer',
          run: async (r) => migrationToProto(await cp.getMigration(str(r.id), consistencyOf(r))),
        },
        CancelMigration: {
          role: 'operator',
          run: async (r) => {
            const reason = optionalString(r.reason);
            const body = validate(cancelMigrationSchema, reason !== undefined ? { reason } : {}, 'request');
            return migrationToProto(await cp.cancelMigration(str(r.id), body));
          },
        },
      },
      ClusterService: {
        GetStatus: { role: 'viewer', run: async () => statusToProto(cp.status()) },
        ListMembers: {
          role: 'viewer',
          run: async (r) => list(await cp.members(consistencyOf(r)), memberToProto),
        },
        GetLeader: { role: 'viewer', run: async (r) => memberToProto(await cp.leader(consistencyOf(r))) },
      },
    };
  }
}
