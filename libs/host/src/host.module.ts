/**
 * This node as a VM host: the ImageCatalog, the VmHost over the node's hypervisor driver, and a
 * StateFollower that reconciles them with the replicated state after every applied batch and
 * whenever a VM's process exits. Needs CLUSTER_STORE and LOCAL_NODE (the consensus module) and
 * HYPERVISOR_DRIVER (the hypervisor module).
 */
import { type DynamicModule, Inject, Injectable, Module, type OnApplicationBootstrap } from '@nestjs/common';
import {
  CLUSTER_STORE,
  type ClusterStore,
  LOCAL_NODE,
  type LocalNode,
  StateFollower,
} from '@novacron/cluster-state';
import { HYPERVISOR_DRIVER, type HypervisorDriver } from '@novacron/hypervisor';
import { LOGGER, METRICS_REGISTRY } from '@novacron/observability';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { ImageCatalog } from './image-catalog';
import { VM_HOST, VmHost } from './vm-host';

export const IMAGE_CATALOG = Symbol.for('dwcp.ImageCatalog');

export interface HostModuleOptions {
  /** Where images live: `<imagesDir>/<image>/vmlinux`, … */
  imagesDir: string;
}

/** Follows the state once the node is up, and stops before the VMs are destroyed. */
@Injectable()
export class VmHostFollower implements OnApplicationBootstrap {
  private readonly follower: StateFollower;

  constructor(
    @Inject(CLUSTER_STORE) store: ClusterStore,
    @Inject(VM_HOST) private readonly host: VmHost,
    @Inject(IMAGE_CATALOG) private readonly images: ImageCatalog,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {
    this.follower = new StateFollower(
      store,
      async () => this.host.reconcile({ vms: await store.read((s) => s.listVms(), 'local') }),
      (e) => logger.warn({ err: e instanceof Error ? e.message : String(e) }, 'host reconcile pass failed'),
    );
    host.onExit(() => this.follower.kick());
  }

  onApplicationBootstrap(): void {
    const kernel = this.images.anyKernel();
    if (kernel !== undefined && this.host.driver.warmUp) {
      this.host.driver
        .warmUp(kernel)
        .catch((e: unknown) => this.logger.warn({ err: String(e) }, 'hypervisor warm-up failed'));
    }
    this.follower.start();
  }

  /** Stops following, then destroys this node's VMs (a restarted node cannot take them over yet). */
  async close(): Promise<void> {
    await this.follower.stop();
    await this.host.close();
  }
}

@Module({})
// biome-ignore lint/complexity/noStaticOnlyClass: a Nest dynamic module is a class with a static forRoot.
export class HostModule {
  static forRoot(options: HostModuleOptions): DynamicModule {
    return {
      module: HostModule,
      global: true,
      providers: [
        { provide: IMAGE_CATALOG, useValue: new ImageCatalog(options.imagesDir) },
        {
          provide: VM_HOST,
          useFactory: (
            driver: HypervisorDriver,
            images: ImageCatalog,
            node: LocalNode,
            logger: Logger,
            registry: Registry,
          ) => new VmHost(driver, images, () => node.nodeId, logger, registry),
          inject: [HYPERVISOR_DRIVER, IMAGE_CATALOG, LOCAL_NODE, LOGGER, METRICS_REGISTRY],
        },
        VmHostFollower,
      ],
      exports: [VM_HOST, IMAGE_CATALOG, VmHostFollower],
    };
  }
}
