/**
 * The VMs this node runs. It follows the replicated state: a VM recorded as running here is
 * launched, one recorded as stopped, deleted or placed elsewhere is destroyed. A VM under migration
 * is left to the migration that holds it (`lend`), and a VM that arrived by migration is taken over
 * (`adopt`). At start-up it takes over the VMs an earlier run of the node left running
 * (`takeOver`), and at shutdown it leaves them running unless told to stop them. It keeps the tail
 * of each VM's serial console for the API. It reports what it observes of each VM it hosts
 * (starting, running with its pid, failed with why, stopped) through a VmStatusSink, on changes only.
 */
import { DomainError, type MigrationRecord, type VmPhase, type VmRecord } from '@novacron/cluster-state';
import { type HypervisorDriver, HypervisorError, type VmHandle } from '@novacron/hypervisor';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { ImageCatalog } from './image-catalog';
import { planTakeover } from './takeover-plan';
import type { VmDisks } from './vm-disks';

const CONSOLE_LINES = 500;

/** The injection token of the node's VmHost. */
export const VM_HOST = Symbol.for('dwcp.VmHost');

/** What this host observed of a VM it hosts; the node records it as the VM's status (`vm.status`). */
export interface VmStatusReport {
  vmId: string;
  phase: VmPhase;
  reason?: string;
  pid?: number;
  /** The revision of the VM record this host acted on. */
  observedRevision: number;
}

/** Records a report in the replicated state; rejects with the command's DomainError when refused. */
export type VmStatusSink = (report: VmStatusReport) => Promise<void>;

/** The longest reason the log takes (`fields.reason`). */
const MAX_REASON = 1024;

interface HostedVm {
  vmId: string;
  handle: VmHandle;
  /** How its process exited, once it has. */
  exit?: { code: number | null; signal: string | null };
  console: string[];
  /** Set while a migration holds the VM: the reconciler does not touch it. */
  lent: boolean;
  readConsole: AsyncIterableIterator<string>;
}

export class VmHost {
  private readonly vms = new Map<string, HostedVm>();
  /** VMs whose launch is under way, so a slow boot is not launched twice. */
  private readonly launching = new Set<string>();
  /** The last launch failure of a VM, so it is logged once, not every pass. */
  private readonly failures = new Map<string, string>();
  private readonly running: Gauge;
  private readonly adopted: Counter;
  private readonly adoptFailed: Counter<'reason'>;
  /** Why a VM left by the node's previous run could not be taken over, by VM id. */
  private readonly takeoverFailures = new Map<string, string>();
  private readonly exitListeners = new Set<(vmId: string) => void>();
  private tookOver!: () => void;
  /** Resolves once `takeOver` has run: the VMs left running are here, or known to be gone. */
  readonly takenOver: Promise<void> = new Promise((resolve) => {
    this.tookOver = resolve;
  });
  private readonly readyListeners = new Set<(vmId: string) => void>();
  /** VMs with disks whose records this run has seen: when one is gone, so are its disks. */
  private readonly seenWithDisks = new Set<string>();
  /** The last status sent per VM (phase, reason, pid), so each change is reported once. */
  private readonly reported = new Map<string, string>();
  /** Each VM's reports in flight, chained so they commit in the order they were observed. */
  private readonly reporting = new Map<string, Promise<void>>();

  constructor(
    readonly driver: HypervisorDriver,
    private readonly images: ImageCatalog,
    private readonly nodeId: () => string,
    private readonly logger: Logger,
    registry: Registry,
    private readonly disks?: VmDisks,
    private readonly statusSink?: VmStatusSink,
  ) {
    this.running = new Gauge({
      name: 'dwcp_host_vms',
      help: 'VMs whose hypervisor process this node runs (under migration included)',
      registers: [registry],
      collect: () => this.running.set(this.vms.size),
    });
    this.adopted = new Counter({
      name: 'dwcp_host_vms_adopted_total',
      help: 'VMs left running by an earlier run of this node and taken over at start-up',
      registers: [registry],
    });
    this.adoptFailed = new Counter({
      name: 'dwcp_host_vms_adopt_failed_total',
      help: 'VMs left by an earlier run of this node that could not be taken over (started again if the records say so)',
      labelNames: ['reason'],
      registers: [registry],
    });
  }

  /**
   * Takes over the VMs an earlier run of this node left running, as the records say (planTakeover):
   * each one the records place here is adopted, every other stopped. One that cannot be adopted is
   * ended and reported (log, dwcp_host_vms_adopt_failed_total, `takeoverFailure`); the next
   * reconcile launches it again if its record says it runs here. Call before the first reconcile.
   */
  async takeOver(state: {
    vms: readonly VmRecord[];
    migrations?: readonly MigrationRecord[];
  }): Promise<void> {
    const { leftovers, adopt, discard } = this.driver;
    if (!leftovers || !adopt || !discard) {
      this.tookOver();
      return;
    }
    const names = await leftovers.call(this.driver);
    for (const step of planTakeover(names, state.vms, this.nodeId(), state.migrations)) {
      let handle: VmHandle;
      try {
        handle = await adopt.call(this.driver, step.name);
      } catch (e) {
        const reason = e instanceof HypervisorError && e.reason ? e.reason : 'error';
        const message = e instanceof Error ? e.message : String(e);
        await discard.call(this.driver, step.name);
        if (step.action !== 'stop') {
          this.adoptFailed.inc({ reason });
          this.takeoverFailures.set(step.vmId, message);
          this.logger.warn({ vm: step.vmId, reason, err: message }, 'could not take over a VM left running');
        }
        continue;
      }
      if (step.action === 'stop') {
        await this.stopLeftover(step.vmId, step.name, step.why, handle);
        continue;
      }
      if (step.action === 'adopt-if-running' && !(await this.runs(handle))) {
        const why = `the destination of migration ${step.migrationId}, which does not run the guest`;
        await this.stopLeftover(step.vmId, step.name, why, handle);
        continue;
      }
      this.track(step.vmId, handle);
      this.adopted.inc();
      this.logger.info({ vm: step.vmId, pid: handle.pid }, 'took over a VM left running');
    }
    this.tookOver();
  }

  private async stopLeftover(vmId: string | undefined, name: string, why: string, handle: VmHandle) {
    this.logger.info({ vm: vmId, qemu: name, why }, 'stopping a VM left running that does not run here');
    await this.driver
      .destroy(handle)
      .catch((e: unknown) => this.logger.warn({ vm: vmId, err: e }, 'stopping it failed'));
  }

  /**
   * Resumes a VM a migration left paused (QEMU completed its side, then the run was cut short): only
   * once the target has said that its destination is gone (settleCutShort).
   */
  async resumeIfPaused(vmId: string): Promise<void> {
    const hosted = this.vms.get(vmId);
    if (hosted === undefined || hosted.lent) return;
    const status = await this.driver.status(hosted.handle);
    if (status.running || status.state === 'exited' || status.state === 'inmigrate') return;
    this.logger.warn({ vm: vmId, state: status.state }, 'resuming a VM a lost migration left paused');
    await this.driver.cont(hosted.handle);
  }

  /** What this host holds of a VM: its QEMU running, paused (or otherwise not running), or none. */
  async copyOf(vmId: string): Promise<'running' | 'paused' | 'gone'> {
    const hosted = this.vms.get(vmId);
    if (hosted === undefined) return 'gone';
    const status = await this.driver.status(hosted.handle).catch(() => undefined);
    if (status === undefined || status.state === 'exited') return 'gone';
    return status.running ? 'running' : 'paused';
  }

  /** Whether the VM this host holds is the QEMU named `name` (a migration's destination) and runs. */
  async runsAs(vmId: string, name: string): Promise<boolean> {
    const hosted = this.vms.get(vmId);
    return hosted !== undefined && hosted.handle.name === name && (await this.runs(hosted.handle));
  }

  private async runs(handle: VmHandle): Promise<boolean> {
    const status = await this.driver.status(handle).catch(() => undefined);
    return status?.running === true;
  }

  /** Why the VM left running by this node's previous run could not be taken over, if it could not. */
  takeoverFailure(vmId: string): string | undefined {
    return this.takeoverFailures.get(vmId);
  }

  /** Calls `listener` when the process of a VM this host runs (not one lent out) exits. */
  onExit(listener: (vmId: string) => void): () => void {
    this.exitListeners.add(listener);
    return () => this.exitListeners.delete(listener);
  }

  /** Calls `listener` when a VM comes up on this host: launched here, or arrived by migration. */
  onReady(listener: (vmId: string) => void): () => void {
    this.readyListeners.add(listener);
    return () => this.readyListeners.delete(listener);
  }

  /** Brings the hypervisor in line with the state for every VM placed on this node. */
  async reconcile(state: { vms: readonly VmRecord[] }): Promise<void> {
    const self = this.nodeId();
    const records = new Map(state.vms.map((vm) => [vm.id, vm]));
    for (const vm of records.values()) {
      if (vm.nodeId !== self) continue;
      const hosted = this.vms.get(vm.id);
      if (vm.state === 'stopped') {
        if (hosted === undefined && !this.launching.has(vm.id)) this.reportStoppedIfNot(vm);
        continue;
      }
      if (vm.state !== 'running') continue;
      if (hosted === undefined) void this.launch(vm);
      else if (!hosted.lent) await this.relaunchIfGone(vm, hosted);
    }
    for (const hosted of [...this.vms.values()]) {
      if (hosted.lent) continue;
      const vm = records.get(hosted.vmId);
      // Under migration, the migration decides (an arrived VM is kept until the record says where it runs).
      const wanted =
        vm !== undefined && (vm.state === 'migrating' || (vm.nodeId === self && vm.state !== 'stopped'));
      if (!wanted) {
        const why = vm === undefined ? 'deleted' : vm.nodeId !== self ? `now on ${vm.nodeId}` : 'stopped';
        this.logger.info({ vm: hosted.vmId, why }, 'destroying a VM this node no longer runs');
        await this.destroy(hosted.vmId);
        if (vm !== undefined && vm.nodeId === self) this.report(vm, { phase: 'stopped' });
      }
    }
    await this.removeDisksOfDeleted(records);
  }

  /**
   * A VM's disks go with its record, and only then: a stopped VM keeps them. Only a record this run
   * has seen and now misses counts as deleted, so a state still catching up (a restarted node, a
   * replica being sent a snapshot) never costs a disk.
   */
  private async removeDisksOfDeleted(records: ReadonlyMap<string, VmRecord>): Promise<void> {
    if (this.disks === undefined) return;
    const deleted = [...this.seenWithDisks].filter((id) => !records.has(id));
    for (const vm of records.values()) if ((vm.disks?.length ?? 0) > 0) this.seenWithDisks.add(vm.id);
    if (deleted.length === 0) return;
    for (const id of deleted) this.seenWithDisks.delete(id);
    const keep = new Set([...records.keys()].filter((id) => !deleted.includes(id)));
    const removed = await this.disks.remove(deleted, keep).catch((e: unknown) => {
      this.logger.warn({ err: e, vms: deleted }, 'removing the disks of deleted VMs failed');
      return [];
    });
    if (removed.length > 0) this.logger.info({ vms: removed }, 'removed the disks of deleted VMs');
  }

  /** The running VM for a migration out of this node; the reconciler leaves it alone until `giveBack`. */
  lend(vmId: string): VmHandle | undefined {
    const hosted = this.vms.get(vmId);
    if (hosted === undefined || hosted.lent) return undefined;
    hosted.lent = true;
    return hosted.handle;
  }

  /** After a failed or cancelled migration the VM is still here. */
  giveBack(vmId: string): void {
    const hosted = this.vms.get(vmId);
    if (hosted) hosted.lent = false;
  }

  /** The source VM was destroyed by a migration that finished. */
  forget(vmId: string): void {
    const hosted = this.vms.get(vmId);
    if (hosted === undefined) return;
    void hosted.readConsole.return?.();
    this.vms.delete(vmId);
    this.reported.delete(vmId);
  }

  /** A VM that arrived by migration: its console starts from what QEMU printed since it started. */
  adopt(vmId: string, handle: VmHandle): void {
    this.track(vmId, handle);
  }

  console(vmId: string): string[] | undefined {
    return this.vms.get(vmId)?.console.slice();
  }

  handle(vmId: string): VmHandle | undefined {
    return this.vms.get(vmId)?.handle;
  }

  async destroy(vmId: string): Promise<void> {
    const hosted = this.vms.get(vmId);
    if (hosted === undefined) return;
    this.forget(vmId);
    await this.driver.destroy(hosted.handle).catch((e: unknown) => {
      this.logger.warn({ vm: vmId, err: e }, 'destroying a VM failed');
    });
  }

  /**
   * At shutdown: leaves every VM running for the node's next run to take over, or with `stopVms`
   * (or a driver whose VMs cannot outlive it) destroys them.
   */
  async close(options: { stopVms?: boolean } = {}): Promise<void> {
    this.exitListeners.clear();
    this.readyListeners.clear();
    if (!options.stopVms && this.driver.release) {
      for (const hosted of this.vms.values()) void hosted.readConsole.return?.();
      this.vms.clear();
      await this.driver.release();
      return;
    }
    await Promise.all([...this.vms.keys()].map((id) => this.destroy(id)));
    await this.driver.close();
  }

  private async launch(vm: VmRecord): Promise<void> {
    if (this.launching.has(vm.id)) return;
    this.launching.add(vm.id);
    // A retry of a launch that failed says nothing new until it ends otherwise.
    if (!this.failures.has(vm.id)) this.report(vm, { phase: 'starting' });
    try {
      const spec = this.images.specFor(vm);
      if ((vm.disks?.length ?? 0) > 0) {
        if (this.disks === undefined)
          throw new DomainError(
            'ERR_UNAVAILABLE',
            'this node keeps no VM disks (no disks directory)',
            'disks',
          );
        spec.disks = await this.disks.prepare(vm);
      }
      const handle = await this.driver.launch(spec);
      this.track(vm.id, handle);
      this.failures.delete(vm.id);
      this.report(vm, { phase: 'running', ...(handle.pid !== undefined ? { pid: handle.pid } : {}) });
      this.logger.info(
        { vm: vm.id, name: vm.name, pid: handle.pid, simulated: handle.simulated },
        'VM launched',
      );
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      if (this.failures.get(vm.id) !== message)
        this.logger.error({ vm: vm.id, err: message }, 'VM launch failed');
      this.failures.set(vm.id, message);
      this.report(vm, { phase: 'failed', reason: message });
    } finally {
      this.launching.delete(vm.id);
    }
  }

  private async relaunchIfGone(vm: VmRecord, hosted: HostedVm): Promise<void> {
    const status = await this.driver
      .status(hosted.handle)
      .catch(() => ({ state: 'exited' as const, running: false }));
    if (status.state !== 'exited') {
      const pid = hosted.handle.pid;
      if (status.running) this.report(vm, { phase: 'running', ...(pid !== undefined ? { pid } : {}) });
      return;
    }
    this.logger.warn({ vm: vm.id }, 'the VM process is gone; launching it again');
    this.forget(vm.id);
    this.report(vm, { phase: 'failed', reason: exitReason(hosted.exit) });
    await this.launch(vm);
  }

  /** A VM that should be stopped, and is not running here, whose recorded status still says otherwise. */
  private reportStoppedIfNot(vm: VmRecord): void {
    const status = vm.status;
    if (status !== undefined && status.nodeId === this.nodeId() && status.phase !== 'stopped')
      this.report(vm, { phase: 'stopped' });
  }

  /**
   * Sends what this host observes of `vm` unless the record or the last report already says it.
   * A report that consensus could not commit is forgotten, so a later pass sends it again; one the
   * state machine refused (this node no longer hosts the VM, or the report is stale) is not retried.
   */
  private report(vm: VmRecord, observed: { phase: VmPhase; reason?: string; pid?: number }): void {
    const sink = this.statusSink;
    if (sink === undefined) return;
    const reason = observed.reason?.slice(0, MAX_REASON);
    const key = JSON.stringify([observed.phase, reason ?? null, observed.pid ?? null]);
    const kept = vm.status;
    const recorded =
      kept !== undefined &&
      kept.nodeId === this.nodeId() &&
      JSON.stringify([kept.phase, kept.reason ?? null, kept.pid ?? null]) === key;
    if (recorded || this.reported.get(vm.id) === key) {
      this.reported.set(vm.id, key);
      return;
    }
    this.reported.set(vm.id, key);
    const report: VmStatusReport = {
      vmId: vm.id,
      phase: observed.phase,
      ...(reason !== undefined ? { reason } : {}),
      ...(observed.pid !== undefined ? { pid: observed.pid } : {}),
      observedRevision: vm.revision,
    };
    const sent = (this.reporting.get(vm.id) ?? Promise.resolve())
      .then(() => sink(report))
      .catch((e: unknown) => {
        const refused = e instanceof DomainError && e.code !== 'ERR_UNAVAILABLE' && e.code !== 'ERR_TIMEOUT';
        if (!refused && this.reported.get(vm.id) === key) this.reported.delete(vm.id);
        this.logger.warn(
          { vm: vm.id, phase: report.phase, err: e instanceof Error ? e.message : String(e) },
          refused
            ? 'VM status report refused'
            : 'VM status report not recorded; it is sent again on a later pass',
        );
      })
      .finally(() => {
        if (this.reporting.get(vm.id) === sent) this.reporting.delete(vm.id);
      });
    this.reporting.set(vm.id, sent);
  }

  /** Resolves once every status report sent so far has been recorded or refused. */
  async reportsSettled(): Promise<void> {
    await Promise.all([...this.reporting.values()]);
  }

  private track(vmId: string, handle: VmHandle): void {
    const console: string[] = [];
    const readConsole = this.driver.serialLines(handle, { replay: true });
    this.vms.set(vmId, { vmId, handle, console, lent: false, readConsole });
    for (const listener of this.readyListeners) listener(vmId);
    void (async () => {
      try {
        for await (const e of this.driver.events(handle)) {
          const hosted = this.vms.get(vmId);
          if (e.type !== 'exit' || hosted?.handle !== handle || hosted.lent) continue;
          hosted.exit = { code: e.code, signal: e.signal };
          for (const listener of this.exitListeners) listener(vmId);
        }
      } catch {
        // No events from a VM that is gone.
      }
    })();
    void (async () => {
      try {
        for await (const line of readConsole) {
          console.push(line);
          if (console.length > CONSOLE_LINES) console.splice(0, console.length - CONSOLE_LINES);
        }
      } catch {
        // The VM went away; its console simply ends.
      }
    })();
  }
}

function exitReason(exit: HostedVm['exit']): string {
  if (exit === undefined) return 'the VM process exited unexpectedly';
  const how = exit.signal !== null ? `signal ${exit.signal}` : `code ${exit.code}`;
  return `the VM process exited unexpectedly (${how})`;
}
