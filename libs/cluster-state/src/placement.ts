/** Where a new VM goes: the ready node with the most free memory that can hold it. */
import type { NodeCapacity, NodeRecord } from './records';

export interface PlacementRequest {
  vcpus: number;
  memoryMiB: number;
}

/**
 * vCPUs are overcommitted as hypervisors usually do, so they only bound a single VM by the host's size;
 * memory is reserved. Ties go to the lowest node id so every replica picks the same node.
 */
export function fits(node: NodeRecord, free: NodeCapacity, request: PlacementRequest): boolean {
  return (
    node.status === 'ready' && free.memoryMiB >= request.memoryMiB && node.capacity.vcpus >= request.vcpus
  );
}

export function pickNode(
  nodes: readonly NodeRecord[],
  freeOf: (node: NodeRecord) => NodeCapacity,
  request: PlacementRequest,
): NodeRecord | undefined {
  let best: { node: NodeRecord; freeMiB: number } | undefined;
  for (const node of nodes) {
    const free = freeOf(node);
    if (!fits(node, free, request)) continue;
    if (
      best === undefined ||
      free.memoryMiB > best.freeMiB ||
      (free.memoryMiB === best.freeMiB && node.id < best.node.id)
    ) {
      best = { node, freeMiB: free.memoryMiB };
    }
  }
  return best?.node;
}
