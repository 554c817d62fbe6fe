/** Command builders and a log driver shared by the specs of this package and of the API. Test-only. */
import type { CommandOutcome } from '../commands';
import type { DomainErrorInfo } from '../errors';
import type { ClusterCommand } from '../schema';
import { ClusterStateMachine } from '../state-machine';

export const AT = '2025-01-01T00:00:00.000Z';

export function registerNode(
  nodeId: string,
  raftId: number,
  capacity = { vcpus: 16, memoryMiB: 16_384 },
  extra: Partial<Extract<ClusterCommand, { type: 'node.register' }>> = {},
): ClusterCommand {
  return {
    type: 'node.register',
    nodeId,
    raftId,
    name: nodeId,
    apiUrl: `http://127.0.0.1:${7700 + raftId * 10}`,
    peerAddr: `127.0.0.1:${7701 + raftId * 10}`,
    capacity,
    labels: {},
    at: AT,
    ...extra,
  };
}

export function createVm(
  vmId: string,
  memoryMiB = 1024,
  extra: Partial<Extract<ClusterCommand, { type: 'vm.create' }>> = {},
): ClusterCommand {
  return { type: 'vm.create', vmId, name: vmId, image: 'debian-12', vcpus: 2, memoryMiB, at: AT, ...extra };
}

/** Applies commands at consecutive indexes and unwraps outcomes. */
export class LogDriver {
  readonly machine = new ClusterStateMachine();
  index = 0;

  run(command: unknown): CommandOutcome {
    this.index += 1;
    return this.machine.apply(command, this.index);
  }

  ok<T = unknown>(command: unknown): T {
    const outcome = this.run(command);
    if (!outcome.ok) throw new Error(`expected success, got ${JSON.stringify(outcome.error)}`);
    return outcome.result as T;
  }

  err(command: unknown): DomainErrorInfo {
    const outcome = this.run(command);
    if (outcome.ok) throw new Error(`expected a rejection, got ${JSON.stringify(outcome.result)}`);
    return outcome.error;
  }
}
