#!/usr/bin/env node
/**
 * `dwcp node start`: reads the config and starts the node assembled from its modules (ACP, and the
 * VM host's: hypervisor, chunk store, host, migration). SIGTERM/SIGINT shut it down cleanly and
 * leave its VMs running (unless hypervisor.stopVmsOnShutdown); SIGUSR2 shuts it down and stops
 * them (`dwcp node stop --stop-vms`). Its pid is in `<dataDir>/node.pid` while it runs.
 */
import 'reflect-metadata';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { DynamicModule } from '@nestjs/common';
import { Registry } from 'prom-client';
import { ConfigError, loadNodeConfig } from './config/node-config';
import { consensusModule, vmHostModules } from './node-modules';
import { createNodeLogger, type NodeHandle, startNode } from './start-node';
import { startTracing } from './tracing/tracing';

/** What an embedder (a test, an extension) may put in place of a built-in module. */
export interface NodeModuleOverrides {
  /** Another hypervisor driver, e.g. `HypervisorModule.forDriver({ useClass: MyDriver })`. */
  hypervisor?: DynamicModule;
}

/** Starts the node and resolves once it serves; the returned handle is also closed on SIGTERM/SIGINT. */
export async function runNode(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  overrides: NodeModuleOverrides = {},
): Promise<NodeHandle> {
  const config = loadNodeConfig({ argv, env });
  const logger = createNodeLogger(config);
  const tracing = startTracing(config.nodeName, config.tracing.otlpEndpoint);
  const handle = await startNode(config, {
    consensus: consensusModule(config),
    host: vmHostModules(config, overrides.hypervisor),
    logger,
    registry: new Registry(),
    beforeShutdown: () => tracing.shutdown(),
  });
  const pidFile = nodePidFile(config.dataDir);
  writeFileSync(pidFile, `${process.pid}\n`);
  const onSignal = (signal: NodeJS.Signals) => {
    logger.info({ signal }, 'signal received');
    handle.close(signal === STOP_VMS_SIGNAL ? { stopVms: true } : {}).then(
      () => {
        rmSync(pidFile, { force: true });
        process.exit(0);
      },
      (e: unknown) => {
        logger.error({ err: e }, 'shutdown failed');
        logger.flush();
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  process.once(STOP_VMS_SIGNAL, onSignal);
  return handle;
}

/** The signal that stops the node and its VMs (SIGTERM leaves them running). */
export const STOP_VMS_SIGNAL = 'SIGUSR2';

/** Where a running node keeps its pid, for `dwcp node stop`. */
export function nodePidFile(dataDir: string): string {
  return join(dataDir, 'node.pid');
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
