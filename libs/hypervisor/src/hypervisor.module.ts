/**
 * The node's hypervisor driver behind one injection token. `forRoot` picks a built-in driver from
 * config (QEMU when it runs here, else the loudly simulated one); `forDriver` plugs in any other
 * driver, so an extension is a module of its own and nobody edits a switch. The VmHost that uses
 * the driver closes it at shutdown.
 */
import { execFileSync } from 'node:child_process';
import {
  type DynamicModule,
  type FactoryProvider,
  type InjectionToken,
  Module,
  type Type,
} from '@nestjs/common';
import { LOGGER } from '@novacron/observability';
import type { Logger } from 'pino';
import type { HypervisorDriver, HypervisorLogger } from './driver';
import { QemuDriver } from './qemu-driver';
import { SimulatedDriver } from './simulated-driver';

/** The node's HypervisorDriver. */
export const HYPERVISOR_DRIVER = Symbol.for('dwcp.HypervisorDriver');

export interface BuiltInDriverOptions {
  /** `auto`: QEMU if `qemuBinary --version` runs, else simulated (said loudly). */
  driver: 'auto' | 'qemu' | 'simulated';
  qemuBinary: string;
  accelerator: 'auto' | 'kvm' | 'tcg';
  /**
   * Where each VM's runtime directory goes (`<runtimeRoot>/<name>`: QMP socket, pidfile, console,
   * log). Given, QEMU outlives the node process, and the restarted node takes it over from there.
   */
  runtimeRoot?: string;
}

/** Another driver: a class Nest constructs, or a factory with what it injects. */
export type DriverProvider =
  | { useClass: Type<HypervisorDriver> }
  | {
      useFactory: (...deps: never[]) => HypervisorDriver | Promise<HypervisorDriver>;
      inject?: InjectionToken[];
    };

function qemuRuns(binary: string): boolean {
  try {
    execFileSync(binary, ['--version'], { stdio: 'ignore', timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

export function hypervisorLogger(logger: Logger): HypervisorLogger {
  return { log: (m) => logger.info(m), warn: (m) => logger.warn(m) };
}

/** The built-in driver `options` ask for. */
export function builtInDriver(options: BuiltInDriverOptions, logger: Logger): HypervisorDriver {
  const { driver, qemuBinary, accelerator } = options;
  if (driver === 'qemu' || (driver === 'auto' && qemuRuns(qemuBinary))) {
    return new QemuDriver({
      qemuBinary,
      accelerator,
      logger: hypervisorLogger(logger),
      ...(options.runtimeRoot === undefined ? {} : { runtimeRoot: options.runtimeRoot, detached: true }),
    });
  }
  logger.warn(
    `SIMULATED hypervisor: ${driver === 'auto' ? `${qemuBinary} does not run here, so ` : ''}VMs on this node are simulated in memory and nothing about them is real`,
  );
  return new SimulatedDriver({ logger: hypervisorLogger(logger) });
}

@Module({})
// biome-ignore lint/complexity/noStaticOnlyClass: a Nest dynamic module is a class with static factories.
export class HypervisorModule {
  /** A built-in driver, chosen from config. */
  static forRoot(options: BuiltInDriverOptions): DynamicModule {
    return HypervisorModule.with({
      provide: HYPERVISOR_DRIVER,
      useFactory: (logger: Logger) => builtInDriver(options, logger),
      inject: [LOGGER],
    });
  }

  /** Any other driver (an extension's): the rest of the node uses it through HYPERVISOR_DRIVER. */
  static forDriver(driver: DriverProvider): DynamicModule {
    return HypervisorModule.with(
      'useClass' in driver
        ? { provide: HYPERVISOR_DRIVER, useClass: driver.useClass }
        : { provide: HYPERVISOR_DRIVER, useFactory: driver.useFactory, inject: driver.inject ?? [] },
    );
  }

  private static with(provider: FactoryProvider | { provide: symbol; useClass: Type }): DynamicModule {
    return {
      module: HypervisorModule,
      global: true,
      providers: [provider],
      exports: [HYPERVISOR_DRIVER],
    };
  }
}
