/**
 * Makes this node a VM host: the hypervisor driver, the image catalog, the chunk store, the VmHost
 * and the MigrationAgent, both following the replicated state every `intervalMs`, and the
 * IncomingMigration service on the peer port.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import type { ClusterStore } from '@novacron/cluster-state';
import { ImageCatalog, VmHost } from '@novacron/host';
import { type HypervisorDriver, QemuDriver, SimulatedDriver } from '@novacron/hypervisor';
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

function qemuRuns(binary: string): boolean {
  try {
    execFileSync(binary, ['--version'], { stdio: 'ignore', timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

function createDriver(config: NodeConfig, images: ImageCatalog, logger: Logger): HypervisorDriver {
  const { driver, qemuBinary, accelerator } = config.hypervisor;
  const hvLogger = { log: (m: string) => logger.info(m), warn: (m: string) => logger.warn(m) };
  if (driver === 'qemu' || (driver === 'auto' && qemuRuns(qemuBinary))) {
    const qemu = new QemuDriver({ qemuBinary, accelerator, logger: hvLogger, dieWithParent: true });
    const kernel = images.anyKernel();
    if (accelerator === 'auto' && kernel !== undefined) {
      qemu.warmUp(kernel).catch((e: unknown) => logger.warn({ err: String(e) }, 'KVM probe failed'));
    }
    return qemu;
  }
  logger.warn(
    `SIMULATED hypervisor: ${driver === 'auto' ? `${qemuBinary} does not run here, so ` : ''}VMs on this node are simulated in memory and nothing about them is real`,
  );
  return new SimulatedDriver({ logger: hvLogger });
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
