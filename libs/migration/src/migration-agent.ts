/**
 * This node's part in live migrations, driven by the replicated records:
 * - as the **source**, it runs every pending migration of a VM it hosts (MigrationRun, with the
 *   target node's half behind the IncomingMigration RPCs), records each phase and progress report
 *   through Raft (`migration.phase`), and aborts a run whose record was cancelled;
 * - as the **target**, it serves those RPCs: an IncomingMigration per migration the state says is
 *   coming here, aborted when the record ends without `done`, its VM handed to the VmHost when it runs.
 * A migration recorded as under way from this node that no run here holds (the node restarted
 * mid-migration), or whose run could not learn whether the destination took over, is settled by
 * asking the target (settleCutShort): finished forward if the destination runs the guest, rolled
 * back otherwise, and the source held paused while the target cannot say.
 *
 * It follows the state after every batch of entries this node applies, when a VM comes up on the
 * host, and when a pending migration's wait for its VM runs out; there is no polling loop.
 */

import { status as GrpcStatus } from '@grpc/grpc-js';
import type { PathEstimator } from '@novacron/bandwidth';
import {
  type ClusterStore,
  DEFAULT_MIGRATION_POLICY,
  DomainError,
  forwardPath,
  isTerminal,
  type MigrationPath,
  type MigrationPhase,
  type MigrationRecord,
  type NodeRecord,
  StateFollower,
  type VmRecord,
} from '@novacron/cluster-state';
import type { ImageCatalog, VmHost } from '@novacron/host';
import type { Logger } from 'pino';
import { settleCutShort } from './cut-short-migration';
import { IncomingMigration } from './incoming-migration';
import {
  IncomingMigrationError,
  type IncomingMigrationHandlers,
  PeerClients,
  RemoteDestination,
  type RpcIdentity,
} from './incoming-rpc';
import type { MigrationMetrics } from './metrics';
import { MigrationRun } from './migration-run';
import type { NativeSinkPath, NativeSourcePath } from './native-data-path';
import type { AbortAnswer, MigrationRunStats } from './ports';

/** What the agent reads of the replicated state on each pass. */
export interface HostSnapshot {
  nodes: readonly NodeRecord[];
  vms: readonly VmRecord[];
  migrations: readonly MigrationRecord[];
}

export interface MigrationAgentDeps {
  store: ClusterStore;
  host: VmHost;
  images: ImageCatalog;
  nodeId: () => string;
  identity: RpcIdentity;
  sinkPath: NativeSinkPath;
  sourcePath: NativeSourcePath;
  metrics: MigrationMetrics;
  logger: Logger;
  /** PBA (libs/bandwidth): what this node measures and predicts of the path to each peer. */
  path: Pick<PathEstimator, 'toward'>;
  /** How long a pending migration waits for its VM to be up on this node before it fails. */
  vmWaitMs?: number;
}

const DEFAULT_VM_WAIT_MS = 60_000;

interface Outgoing {
  abort: AbortController;
  done: Promise<void>;
}

const describe = (e: unknown): string => (e instanceof Error ? e.message : String(e));

export class MigrationAgent {
  private readonly outgoing = new Map<string, Outgoing>();
  private readonly incoming = new Map<string, { migration: IncomingMigration; vmId: string }>();
  /** Migrations being failed or settled here without a run. */
  private readonly settling = new Set<string>();
  /** Ends the settling of cut-short migrations at close. */
  private readonly closing = new AbortController();
  /** Wake-ups for pending migrations still waiting for their VM, by migration id. */
  private readonly deadlines = new Map<string, NodeJS.Timeout>();
  private readonly follower: StateFollower;
  private stopVmWatch: (() => void) | undefined;
  /** Connections to the other nodes' IncomingMigration service, kept from one migration to the next. */
  private readonly peers: PeerClients;

  constructor(private readonly deps: MigrationAgentDeps) {
    this.peers = new PeerClients(deps.identity);
    this.follower = new StateFollower(
      deps.store,
      async () => this.reconcile(await this.snapshot('local')),
      (e) => deps.logger.warn({ err: describe(e) }, 'migration agent pass failed'),
    );
  }

  /** Starts following the replicated state and the VMs coming up on this host. */
  start(): void {
    this.stopVmWatch ??= this.deps.host.onReady(() => this.follower.kick());
    this.follower.start();
  }

  /** The state the agent acts on; `linearizable` for RPCs from another node, which may be ahead of us. */
  snapshot(consistency: 'local' | 'linearizable'): Promise<HostSnapshot> {
    return this.deps.store.read(
      (s) => ({ nodes: s.listNodes(), vms: s.listVms(), migrations: s.listMigrations() }),
      consistency,
    );
  }

  reconcile(snapshot: HostSnapshot): void {
    const self = this.deps.nodeId();
    this.peers.retain(
      snapshot.nodes
        .filter((n) => n.id !== self && n.peerAddr)
        .map((n) => ({ addr: n.peerAddr, nodeName: n.name })),
    );
    for (const m of snapshot.migrations) {
      if (m.sourceNodeId === self) this.followOutgoing(m, snapshot);
      if (m.targetNodeId === self) this.followIncoming(m);
    }
  }

  /** Aborts every run (each rolls back: the VM stays here) and every incoming migration. */
  async close(): Promise<void> {
    this.stopVmWatch?.();
    this.closing.abort('the node is shutting down');
    await this.follower.stop();
    for (const t of this.deadlines.values()) clearTimeout(t);
    this.deadlines.clear();
    for (const o of this.outgoing.values()) o.abort.abort('the source node is shutting down');
    await Promise.allSettled([...this.outgoing.values()].map((o) => o.done));
    await Promise.allSettled(
      [...this.incoming.values()].map((i) => i.migration.abort('the target node is shutting down')),
    );
    this.peers.close();
  }

  /** The server side of the IncomingMigration RPCs. */
  handlers(snapshot = () => this.snapshot('linearizable')): IncomingMigrationHandlers {
    return {
      prepare: async (id, caller) => {
        const s = await snapshot();
        const m = this.callersMigration(s, id, caller, 'prepare');
        if (m.targetNodeId !== this.deps.nodeId() || (m.phase !== 'pending' && m.phase !== 'preparing')) {
          throw new IncomingMigrationError(
            GrpcStatus.FAILED_PRECONDITION,
            `migration ${id} is ${m.phase} to ${m.targetNodeId}; this node cannot take it now`,
          );
        }
        if (this.incoming.has(id)) {
          throw new IncomingMigrationError(GrpcStatus.ALREADY_EXISTS, `migration ${id} is already prepared`);
        }
        const vm = s.vms.find((v) => v.id === m.vmId);
        if (vm === undefined)
          throw new IncomingMigrationError(GrpcStatus.NOT_FOUND, `VM ${m.vmId} not found`);
        let spec: ReturnType<ImageCatalog['specFor']>;
        try {
          spec = this.deps.images.specFor(vm, `${vm.id}.${id}`);
        } catch (e) {
          throw new IncomingMigrationError(GrpcStatus.FAILED_PRECONDITION, describe(e));
        }
        const migration = new IncomingMigration({
          id,
          spec,
          driver: this.deps.host.driver,
          dataPath: this.deps.sinkPath,
          logger: this.migrationLogger(),
        });
        this.incoming.set(id, { migration, vmId: vm.id });
        try {
          return await migration.prepare();
        } catch (e) {
          await migration.abort(describe(e));
          throw e;
        }
      },
      await: async (id, caller) => {
        this.callersMigration(await snapshot(), id, caller, 'await');
        const entry = this.incoming.get(id);
        if (entry === undefined) {
          throw new IncomingMigrationError(GrpcStatus.NOT_FOUND, `migration ${id} is not prepared here`);
        }
        const result = await entry.migration.completion();
        if (entry.migration.vm) this.deps.host.adopt(entry.vmId, entry.migration.vm);
        return result;
      },
      abort: async (id, reason, caller) => {
        const m = this.callersMigration(await snapshot(), id, caller, 'abort');
        const entry = this.incoming.get(id);
        if (entry !== undefined) return entry.migration.abort(reason);
        // This node restarted and took over the destination QEMU because it runs the guest.
        const runs = await this.deps.host.runsAs(m.vmId, `${m.vmId}.${id}`);
        return runs ? 'destination-runs' : 'aborted';
      },
    };
  }

  /**
   * The migration a call is about, once the caller is known to be its source node: only the node
   * that runs a migration may prepare, await or abort its destination.
   */
  private callersMigration(s: HostSnapshot, id: string, caller: string[], what: string): MigrationRecord {
    if (!s.nodes.some((n) => n.status !== 'removed' && caller.includes(n.name))) {
      throw new IncomingMigrationError(
        GrpcStatus.PERMISSION_DENIED,
        'certificate names no member of the cluster',
      );
    }
    const m = s.migrations.find((r) => r.id === id);
    if (m === undefined) throw new IncomingMigrationError(GrpcStatus.NOT_FOUND, `migration ${id} not found`);
    const source = s.nodes.find((n) => n.id === m.sourceNodeId);
    if (source === undefined || !caller.includes(source.name)) {
      throw new IncomingMigrationError(
        GrpcStatus.PERMISSION_DENIED,
        `only the source node of ${id} may ${what} it`,
      );
    }
    return m;
  }

  private followOutgoing(m: MigrationRecord, s: HostSnapshot): void {
    const run = this.outgoing.get(m.id);
    if (run) {
      if (isTerminal(m.phase)) run.abort.abort(m.reason ?? `the migration is ${m.phase}`);
      return;
    }
    if (isTerminal(m.phase) || this.settling.has(m.id)) {
      this.clearWake(m.id);
      return;
    }
    if (m.phase !== 'pending') {
      this.settle(m, 'the source node lost the migration (it restarted while the migration ran)');
      return;
    }
    const vm = s.vms.find((v) => v.id === m.vmId);
    const target = s.nodes.find((n) => n.id === m.targetNodeId);
    const handle = vm ? this.deps.host.lend(vm.id) : undefined;
    if (vm === undefined || target === undefined || handle === undefined) {
      const left = Date.parse(m.createdAt) + (this.deps.vmWaitMs ?? DEFAULT_VM_WAIT_MS) - Date.now();
      if (left <= 0) this.fail(m.id, `VM ${m.vmId} is not running on this node`);
      else this.wakeIn(m.id, left);
      return;
    }
    this.clearWake(m.id);
    const abort = new AbortController();
    const destination = new RemoteDestination({
      migrationId: m.id,
      addr: target.peerAddr,
      nodeName: target.name,
      identity: this.deps.identity,
      clients: this.peers,
    });
    const migrationRun = new MigrationRun({
      id: m.id,
      source: { driver: this.deps.host.driver, vm: handle, dataPath: this.deps.sourcePath },
      destination,
      path: this.deps.path.toward(target.id, target.raftId),
      onPhase: (phase, stats, reason, path) => this.record(m.id, phase, stats, reason, path),
      signal: abort.signal,
      options: {
        ...(m.policy ?? DEFAULT_MIGRATION_POLICY),
        ...(m.maxBandwidthBytesPerSec === undefined
          ? {}
          : { maxBandwidthBytesPerSec: m.maxBandwidthBytesPerSec }),
      },
      metrics: this.deps.metrics,
      logger: this.migrationLogger(),
    });
    const done = migrationRun.run().then((outcome) => {
      destination.close();
      if (outcome.phase === 'done') this.deps.host.forget(vm.id);
      else this.deps.host.giveBack(vm.id);
      if (outcome.phase === 'held') this.settle(m, outcome.reason ?? 'the run could not settle it');
      this.outgoing.delete(m.id);
    });
    this.outgoing.set(m.id, { abort, done });
  }

  /** Another pass once a pending migration's wait for its VM has run out. */
  private wakeIn(migrationId: string, ms: number): void {
    if (this.deadlines.has(migrationId)) return;
    const timer = setTimeout(() => {
      this.deadlines.delete(migrationId);
      this.follower.kick();
    }, ms + 5);
    timer.unref();
    this.deadlines.set(migrationId, timer);
  }

  private clearWake(migrationId: string): void {
    clearTimeout(this.deadlines.get(migrationId));
    this.deadlines.delete(migrationId);
  }

  private followIncoming(m: MigrationRecord): void {
    const entry = this.incoming.get(m.id);
    if (entry === undefined || !isTerminal(m.phase)) return;
    this.incoming.delete(m.id);
    if (m.phase !== 'done') void entry.migration.abort(m.reason ?? `the migration is ${m.phase}`);
  }

  /** Records a phase or progress report; `cancelled` becomes `migration.cancel`, or `failed` once too late to cancel. */
  private async record(
    migrationId: string,
    phase: MigrationPhase,
    stats: MigrationRunStats,
    reason?: string,
    path?: MigrationPath,
  ): Promise<void> {
    const at = new Date().toISOString();
    if (phase === 'cancelled') {
      try {
        await this.deps.store.execute({
          type: 'migration.cancel',
          migrationId,
          reason: reason ?? 'cancelled',
          at,
        });
        return;
      } catch (e) {
        if (!(e instanceof DomainError && e.code === 'ERR_CONFLICT')) throw e;
        const now = await this.deps.store.read((s) => s.getMigration(migrationId), 'local');
        if (now === undefined || isTerminal(now.phase)) return;
        phase = 'failed';
      }
    }
    // Only finite numbers are replicated (a ratio over zero bytes is not one).
    const finite = Object.fromEntries(Object.entries(stats).filter(([, v]) => Number.isFinite(v)));
    await this.deps.store.execute({
      type: 'migration.phase',
      migrationId,
      phase,
      stats: finite,
      ...(path === undefined ? {} : { path }),
      ...(reason === undefined ? {} : { reason }),
      at,
    });
  }

  private fail(migrationId: string, reason: string): void {
    this.settling.add(migrationId);
    this.record(migrationId, 'failed', {}, reason)
      .catch((e: unknown) =>
        this.deps.logger.warn({ migration: migrationId, err: describe(e) }, 'could not fail a migration'),
      )
      .finally(() => this.settling.delete(migrationId));
  }

  /**
   * A migration whose run here ended without an outcome (or that no run here holds: this node
   * restarted, its VM outlived it and the host took it over): settled by settleCutShort against
   * the target, once the host's take-over is done. A pass after a failure starts it again.
   */
  private settle(m: MigrationRecord, reason: string): void {
    const { host, logger } = this.deps;
    this.settling.add(m.id);
    void (async () => {
      try {
        await host.takenOver;
        await settleCutShort(
          m.id,
          reason,
          {
            sourceCopy: () => host.copyOf(m.vmId),
            abortTarget: (why) => this.abortTarget(m, why),
            resumeSource: () => host.resumeIfPaused(m.vmId),
            destroySource: () => host.destroy(m.vmId),
            record: (outcome, why) => this.recordSettled(m.id, outcome, why),
            logger: this.migrationLogger(),
          },
          { signal: this.closing.signal },
        );
      } catch (e) {
        if (!this.closing.signal.aborted)
          logger.warn({ migration: m.id, vm: m.vmId, err: describe(e) }, 'settling a cut-short migration');
      } finally {
        this.settling.delete(m.id);
      }
    })();
  }

  /** Abort on the migration's target node, as the state now places it. */
  private async abortTarget(m: MigrationRecord, reason: string): Promise<AbortAnswer> {
    const s = await this.snapshot('local');
    const target = s.nodes.find((n) => n.id === m.targetNodeId);
    if (target === undefined) throw new Error(`the target node ${m.targetNodeId} is not in the cluster`);
    return new RemoteDestination({
      migrationId: m.id,
      addr: target.peerAddr,
      nodeName: target.name,
      identity: this.deps.identity,
      clients: this.peers,
    }).abort(reason);
  }

  /** `done` and `held` walk the record forward (to `done`, or to `switching-over` with the reason). */
  private async recordSettled(
    id: string,
    outcome: 'done' | 'failed' | 'held',
    reason: string,
  ): Promise<void> {
    if (outcome === 'failed') return this.record(id, 'failed', {}, reason);
    const now = await this.deps.store.read((s) => s.getMigration(id), 'local');
    if (now === undefined || isTerminal(now.phase)) {
      throw new Error(`migration ${id} is ${now?.phase ?? 'gone'}; cannot record it ${outcome}`);
    }
    const to: MigrationPhase = outcome === 'done' ? 'done' : 'switching-over';
    const steps = forwardPath(now.phase, to);
    for (const phase of steps.length > 0 ? steps : [to]) {
      await this.record(id, phase, {}, phase === to ? reason : undefined);
    }
  }

  private migrationLogger() {
    const { logger } = this.deps;
    return { log: (msg: string) => logger.info(msg), warn: (msg: string) => logger.warn(msg) };
  }
}
