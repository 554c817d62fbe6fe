/**
 * What a restarted node does with each VM an earlier run of it left on the host, from the replicated
 * records alone: take over the one a record says runs here, stop every other. A VM's QEMU is named
 * after it (`<vmId>`) where it was launched and `<vmId>.<migrationId>` where a migration brought it.
 */
import type { VmRecord } from '@novacron/cluster-state';

export type TakeoverStep =
  | { name: string; vmId: string; action: 'adopt' }
  | { name: string; vmId: string | undefined; action: 'stop'; why: string };

/** The record a leftover's name belongs to (VM ids have no dots), if there is one. */
function vmOf(name: string, records: ReadonlyMap<string, VmRecord>): VmRecord | undefined {
  return records.get(name.split('.')[0] as string);
}

/**
 * One step per leftover name. A VM is taken over when its record places it on `self` and running or
 * migrating (a migration the restart interrupted, which the migration agent rolls back), and only once.
 */
export function planTakeover(
  leftovers: readonly string[],
  vms: readonly VmRecord[],
  self: string,
): TakeoverStep[] {
  const records = new Map(vms.map((vm) => [vm.id, vm]));
  const taken = new Set<string>();
  return [...leftovers].sort().map((name): TakeoverStep => {
    const vm = vmOf(name, records);
    if (vm === undefined) return { name, vmId: undefined, action: 'stop', why: 'no such VM in the records' };
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
