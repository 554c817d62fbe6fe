/**
 * This node as a VM host: the ImageCatalog, the VmHost over the node's hypervisor driver, and a
 * StateFollower that reconciles them with the replicated state after every applied batch and
 * whenever a VM's process exits; what the host observes of each VM goes into Raft as `vm.status`,
 * stamped with this node's id and clock. Needs CLUSTER_STORE and LOCAL_NODE (the consensus module) and
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
import { VmDisks } from './vm-disks';
import { VM_HOST, VmHost, type VmStatusSink } from './vm-host';

/** The proposer of `vm.status`: the local node's id and its clock go into the command. */
function statusSink(store: ClusterStore, node: LocalNode): VmStatusSink {
  return async (report) => {
    await store.execute({ type: 'vm.status', ...report, nodeId: node.nodeId, at: new Date().toISOString() });
  };
}

export const IMAGE_CATALOG = Symbol.for('dwcp.ImageCatalog');

export interface HostModuleOptions {
  /** Where images live: `<imagesDir>/<image>/vmlinux`, … */
  imagesDir: string;
  /** Where VM disks live: `<disksDir>/<vmId>/<diskId>.<format>`. Without it, a VM with disks does not launch here. */
  disksDir?: string;
  /** `qemu-img` for disk overlays (default: from PATH). */
  qemuImg?: string;
  /** Stop the VMs when the node shuts down; by default they keep running and the next run takes them over. */
  stopVmsOnShutdown?: boolean;
}

export const HOST_OPTIONS = Symbol.for('dwcp.HostOptions');

const TAKEOVER_RETRY_MS = 1_000;

/**
 * Takes over the VMs the node's previous run left, then follows the state once the node is up; at
 * shutdown stops following, then leaves the VMs running (or stops them, as configured).
 */
@Injectable()
export class VmHostFollower implements OnApplicationBootstrap {
  private readonly follower: StateFollower;
  private closed = false;
  private startingUp: Promise<void> | undefined;

  constructor(
    @Inject(CLUSTER_STORE) private readonly store: ClusterStore,
    @Inject(HOST_OPTIONS) private readonly options: HostModuleOptions,
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
    this.startingUp = this.takeOverThenFollow();
  }

  /**
   * The records must be current before any VM left running is judged (a record not yet applied
   * here would have it stopped), so the take-over reads linearizably, retrying while there is no
   * quorum; nothing is launched until it is done.
   */
  private async takeOverThenFollow(): Promise<void> {
    for (;;) {
      if (this.closed) return;
      try {
        await this.host.takeOver(
          await this.store.read(
            (s) => ({ vms: s.listVms(), migrations: s.listMigrations() }),
            'linearizable',
          ),
        );
        break;
      } catch (e) {
        this.logger.warn(
          { err: e instanceof Error ? e.message : String(e) },
          'taking over VMs left running: retrying',
        );
        await new Promise((r) => setTimeout(r, TAKEOVER_RETRY_MS));
      }
    }
    if (!this.closed) this.follower.start();
  }

  /** Stops following, then leaves this node's VMs running for its next run, or stops them as configured. */
  async close(options: { stopVms?: boolean } = {}): Promise<void> {
    this.closed = true;
    await this.startingUp;
    await this.follower.stop();
    await this.host.close({ stopVms: options.stopVms ?? this.options.stopVmsOnShutdown ?? false });
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
        { provide: HOST_OPTIONS, useValue: options },
        {
          provide: VM_HOST,
          useFactory: (
            driver: HypervisorDriver,
            images: ImageCatalog,
            node: LocalNode,
            logger: Logger,
            registry: Registry,
            store: ClusterStore,
          ) =>
            new VmHost(
              driver,
              images,
              () => node.nodeId,
              logger,
              registry,
              options.disksDir === undefined
                ? undefined
                : new VmDisks(options.disksDir, images, options.qemuImg ? { qemuImg: options.qemuImg } : {}),
              statusSink(store, node),
            ),
          inject: [HYPERVISOR_DRIVER, IMAGE_CATALOG, LOCAL_NODE, LOGGER, METRICS_REGISTRY, CLUSTER_STORE],
        },
        VmHostFollower,
      ],
      exports: [VM_HOST, IMAGE_CATALOG, VmHostFollower],
    };
  }
}
