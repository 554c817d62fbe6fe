/**
 * The lib modules a node is assembled from, configured from its NodeConfig: ACP for consensus,
 * and, on a node that hosts VMs, the hypervisor driver, the chunk store, the VM host and
 * migration. A caller may plug in its own hypervisor module (`HypervisorModule.forDriver`).
 */
import { join, resolve } from 'node:path';
import type { DynamicModule } from '@nestjs/common';
import { type AcpConfig, ConsensusModule } from '@novacron/consensus';
import { ChunkStoreModule } from '@novacron/hde';
import { HostModule } from '@novacron/host';
import { HypervisorModule } from '@novacron/hypervisor';
import { MigrationModule } from '@novacron/migration';
import { apiUrlOf, type NodeConfig } from './config/node-config';

const MiB = 1024 * 1024;

export function acpConfigOf(config: NodeConfig): AcpConfig {
  return {
    dataDir: config.dataDir,
    nodeName: config.nodeName,
    clusterName: config.clusterName,
    peer: {
      host: config.peer.host,
      port: config.peer.port,
      ...(config.peer.advertise !== undefined ? { advertise: config.peer.advertise } : {}),
    },
    apiUrl: apiUrlOf(config),
    capacity: config.capacity,
    ...(config.join !== undefined && config.joinToken !== undefined
      ? { join: { url: config.join, token: config.joinToken } }
      : {}),
    raft: config.raft,
    ...(config.faults.peerDelayMs > 0 ? { faults: { peerDelayMs: config.faults.peerDelayMs } } : {}),
  };
}

/** The Raft-backed ClusterStore, this node's membership and its peer port. */
export function consensusModule(config: NodeConfig): DynamicModule {
  return ConsensusModule.forRoot(acpConfigOf(config));
}

/**
 * What makes a node a VM host; `hypervisor` defaults to the built-in driver the config names, whose
 * VMs live in `<dataDir>/vms` and outlive the node process.
 */
export function vmHostModules(
  config: NodeConfig,
  hypervisor: DynamicModule = HypervisorModule.forRoot({
    ...config.hypervisor,
    runtimeRoot: resolve(config.dataDir, 'vms'),
  }),
): DynamicModule[] {
  return [
    hypervisor,
    ChunkStoreModule.forRoot({
      dir: join(config.dataDir, 'chunks'),
      capacityBytes: config.migration.chunkStoreMiB * MiB,
    }),
    HostModule.forRoot({
      imagesDir: config.hypervisor.imagesDir ?? join(config.dataDir, 'images'),
      disksDir: join(config.dataDir, 'disks'),
      stopVmsOnShutdown: config.hypervisor.stopVmsOnShutdown,
    }),
    MigrationModule.forRoot({
      listenHost: config.migration.host ?? config.peer.host,
      ...(config.migration.advertiseHost ? { advertiseHost: config.migration.advertiseHost } : {}),
      orphanTimeoutMs: config.migration.orphanTimeoutMs,
    }),
  ];
}
