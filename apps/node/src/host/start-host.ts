/**
 * Makes this node a VM host: the hypervisor driver, the image catalog, the chunk store, the VmHost
 * and the MigrationAgent, both following the replicated state every `intervalMs`, and the
 * IncomingMigration service on the peer port.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import type { ClusterStore } from '@novacron/cluster-state';
import { ImageCatalog, VmHost } from '@novacron/host';
import { builtInDriver, type HypervisorDriver } from '@novacron/hypervisor';
import {
  type CertNames,
  incomingMigrationServer,
  incomingMigrationService,
  MigrationMetrics,
  NativeSinkPath,
  NativeSourcePath,
  type RpcIdentity,
} from '@novacron/migration';
import { ChunkStore } from '@novacron/native';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { NodeConfig } from '../config/node-config';
import { type HostSnapshot, MigrationAgent } from './migration-agent';

const MiB = 1024 * 1024;

/** What the host needs from consensus beyond the store. */
export interface HostPeer {
  nodeId: string;
  identity: RpcIdentity;
  addPeerService(service: grpc.ServiceDefinition, implementation: grpc.UntypedServiceImplementation): void;
  certNames: CertNames;
  peerRttMs: () => number | undefined;
}

export interface HostHandle {
  host: VmHost;
  agent: MigrationAgent;
  close(): Promise<void>;
}

/** The configured driver; a QEMU driver probes KVM once now, so the first incoming migration does not pay for it. */
function createDriver(config: NodeConfig, images: ImageCatalog, logger: Logger): HypervisorDriver {
  const driver = builtInDriver(config.hypervisor, logger);
  const kernel = images.anyKernel();
  if (config.hypervisor.accelerator === 'auto' && kernel !== undefined && driver.warmUp) {
    driver.warmUp(kernel).catch((e: unknown) => logger.warn({ err: String(e) }, 'KVM probe failed'));
  }
  return driver;
}

export function startHost(
  config: NodeConfig,
  deps: { store: ClusterStore; peer: HostPeer; registry: Registry; logger: Logger; intervalMs?: number },
): HostHandle {
  const { store, peer, registry, logger } = deps;
  const images = new ImageCatalog(config.hypervisor.imagesDir ?? join(config.dataDir, 'images'));
  const host = new VmHost(createDriver(config, images, logger), images, () => peer.nodeId, logger, registry);
  const chunkDir = join(config.dataDir, 'chunks');
  mkdirSync(chunkDir, { recursive: true });
  const chunks = ChunkStore.open(chunkDir, config.migration.chunkStoreMiB * MiB);
  const listenHost = config.migration.host ?? config.peer.host;
  const sinkPath = new NativeSinkPath({
    store: chunks,
    identity: peer.identity,
    nodeName: config.nodeName,
    host: listenHost,
    ...(config.migration.advertiseHost ? { advertiseHost: config.migration.advertiseHost } : {}),
    orphanTimeoutMs: config.migration.orphanTimeoutMs,
  });
  const agent = new MigrationAgent({
    store,
    host,
    images,
    nodeId: () => peer.nodeId,
    identity: peer.identity,
    sinkPath,
    sourcePath: new NativeSourcePath({ identity: peer.identity }),
    metrics: new MigrationMetrics(registry),
    logger,
    peerRttMs: peer.peerRttMs,
  });
  const snapshot = (consistency: 'local' | 'linearizable'): Promise<HostSnapshot> =>
    store.read(
      (s) => ({ nodes: s.listNodes(), vms: s.listVms(), migrations: s.listMigrations() }),
      consistency,
    );
  peer.addPeerService(
    incomingMigrationService().service,
    incomingMigrationServer(
      agent.handlers(() => snapshot('linearizable')),
      peer.certNames,
    ),
  );

  let stopped = false;
  let pass: Promise<void> = Promise.resolve();
  const follow = async (): Promise<void> => {
    try {
      const s = await snapshot('local');
      await host.reconcile(s);
      agent.reconcile(s);
    } catch (e) {
      logger.warn({ err: e instanceof Error ? e.message : String(e) }, 'host reconcile pass failed');
    }
  };
  const timer = setInterval(() => {
    if (!stopped) pass = pass.then(follow);
  }, deps.intervalMs ?? 250);

  return {
    host,
    agent,
    close: async () => {
      stopped = true;
      clearInterval(timer);
      await pass;
      await agent.close();
      await host.close();
    },
  };
}
