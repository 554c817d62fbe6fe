/**
 * What a restarted node does with each VM an earlier run of it left on the host, from the replicated
 * records alone: take over the one a record says runs here, stop every other. A VM's QEMU is named
 * after it (`<vmId>`) where it was launched and `<vmId>.<migrationId>` where a migration brought it.
 */
import { isTerminal, type MigrationRecord, type VmRecord } from '@novacron/cluster-state';

export type TakeoverStep =
  | { name: string; vmId: string; action: 'adopt' }
  /**
   * The destination of a migration to this node that is still under way: kept if it runs the
   * guest (it had the whole stream, and the source decides the migration's outcome from that),
   * stopped otherwise.
   */
  | { name: string; vmId: string; action: 'adopt-if-running'; migrationId: string }
  | { name: string; vmId: string | undefined; action: 'stop'; why: string };

/** The record a leftover's name belongs to (VM ids have no dots), if there is one. */
function vmOf(name: string, records: ReadonlyMap<string, VmRecord>): VmRecord | undefined {
  return records.get(name.split('.')[0] as string);
}

/** The migration to `self` under way that a leftover named `<vmId>.<migrationId>` is the destination of. */
function incomingOf(
  name: string,
  vm: VmRecord,
  migrations: readonly MigrationRecord[],
  self: string,
): MigrationRecord | undefined {
  const m = migrations.find((r) => name === `${r.vmId}.${r.id}`);
  if (m === undefined || m.vmId !== vm.id || m.targetNodeId !== self || isTerminal(m.phase)) return undefined;
  return vm.state === 'migrating' ? m : undefined;
}

/**
 * One step per leftover name. A VM is taken over when its record places it on `self` and running or
 * migrating (a migration the restart interrupted, which the migration agent settles), and only
 * once; the destination QEMU of a migration under way to `self` is kept if it runs.
 */
export function planTakeover(
  leftovers: readonly string[],
  vms: readonly VmRecord[],
  self: string,
  migrations: readonly MigrationRecord[] = [],
): TakeoverStep[] {
  const records = new Map(vms.map((vm) => [vm.id, vm]));
  const taken = new Set<string>();
  return [...leftovers].sort().map((name): TakeoverStep => {
    const vm = vmOf(name, records);
    if (vm === undefined) return { name, vmId: undefined, action: 'stop', why: 'no such VM in the records' };
    const incoming = incomingOf(name, vm, migrations, self);
    if (incoming !== undefined && !taken.has(vm.id)) {
      taken.add(vm.id);
      return { name, vmId: vm.id, action: 'adopt-if-running', migrationId: incoming.id };
    }
    if (vm.nodeId !== self)
      return { name, vmId: vm.id, action: 'stop', why: `the VM is placed on ${vm.nodeId}` };
    if (vm.state === 'stopped')
      return { name, vmId: vm.id, action: 'stop', why: 'the VM is recorded as stopped' };
    if (taken.has(vm.id))
      return { name, vmId: vm.id, action: 'stop', why: 'another QEMU of the VM was taken over' };
    taken.add(vm.id);
    return { name, vmId: vm.id, action: 'adopt' };
  });
}
