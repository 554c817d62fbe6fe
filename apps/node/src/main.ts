#!/usr/bin/env node
/**
 * `dwcp node start`: reads the config, starts consensus (libs/consensus, which hands back the
 * Raft-backed ClusterStore), then the API process around it; SIGTERM/SIGINT shut it down cleanly.
 */
import 'reflect-metadata';
import type { ClusterStore } from '@novacron/cluster-state';
import { peerCertNames, startAcp } from '@novacron/consensus';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import type { ClusterAdmission } from './api/admission';
import { apiUrlOf, ConfigError, loadNodeConfig, type NodeConfig } from './config/node-config';
import { type HostPeer, startHost } from './host/start-host';
import { createNodeLogger, type NodeHandle, startNode } from './start-node';
import { startTracing } from './tracing/tracing';

/** What consensus gives the API process. */
export interface ConsensusHandle {
  store: ClusterStore;
  admission?: ClusterAdmission;
  /** The peer port and identity, for the node's part in migrations; without it the node hosts no VMs. */
  peer?: HostPeer;
  /** Stops Raft (after handing leadership over); runs after the API has drained. */
  close(): Promise<void>;
}

export type ConsensusOpener = (
  config: NodeConfig,
  registry: Registry,
  logger: Logger,
) => Promise<ConsensusHandle>;

/** Opens the Raft-backed store of libs/consensus (`@novacron/consensus`). */
export const openAcp: ConsensusOpener = async (config, registry, logger) => {
  const runtime = await startAcp(
    {
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
    },
    registry,
  );
  if (runtime.created) {
    // The one time the operator learns where the first admin token is.
    logger.warn(
      { adminTokenFile: runtime.created.adminTokenFile, joinTokenFile: runtime.created.joinTokenFile },
      `created a new single-node cluster; the admin token is in ${runtime.created.adminTokenFile}`,
    );
  }
  return {
    store: runtime.store,
    admission: (token, req) => runtime.admit(token, req),
    peer: {
      nodeId: runtime.membership.nodeId,
      identity: runtime.identity,
      addPeerService: (service, implementation) => runtime.addPeerService(service, implementation),
      certNames: peerCertNames,
      peerRttMs: () => runtime.peerRttMs(),
    },
    close: () => runtime.close(),
  };
};

/** Starts the node and resolves once it serves; the returned handle is also closed on SIGTERM/SIGINT. */
export async function runNode(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  openConsensus: ConsensusOpener = openAcp,
): Promise<NodeHandle> {
  const config = loadNodeConfig({ argv, env });
  const logger = createNodeLogger(config);
  const tracing = startTracing(config.nodeName, config.tracing.otlpEndpoint);
  const registry = new Registry();
  const consensus = await openConsensus(config, registry, logger);
  const vmHost = consensus.peer
    ? startHost(config, { store: consensus.store, peer: consensus.peer, registry, logger })
    : undefined;
  const handle = await startNode(config, {
    store: consensus.store,
    logger,
    registry,
    ...(consensus.admission ? { admission: consensus.admission } : {}),
    ...(vmHost ? { host: vmHost.host } : {}),
    beforeShutdown: async () => {
      await vmHost?.close();
      await consensus.close();
      await tracing.shutdown();
    },
  });
  const onSignal = (signal: NodeJS.Signals) => {
    logger.info({ signal }, 'signal received');
    handle.close().then(
      () => process.exit(0),
      (e: unknown) => {
        logger.error({ err: e }, 'shutdown failed');
        logger.flush();
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  return handle;
}

/** Exit status 2 for bad config (the message names the key), 1 for any other start-up failure. */
export async function main(argv: readonly string[] = process.argv.slice(2)): Promise<void> {
  try {
    await runNode(argv, process.env);
  } catch (e) {
    process.stderr.write(`dwcp node: ${(e as Error).message}\n`);
    process.exit(e instanceof ConfigError ? 2 : 1);
  }
}

if (require.main === module) void main();
