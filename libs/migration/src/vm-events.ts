/** Waiting on a VM's event stream. */
import type { VmEvent } from '@novacron/hypervisor';

/** Resolves to the time (QMP's epoch clock, ms) of the first event of `type`, or undefined when the events end first. */
export async function firstEventAt(
  events: AsyncIterator<VmEvent>,
  type: VmEvent['type'],
): Promise<number | undefined> {
  for (;;) {
    const next = await events.next();
    if (next.done) return undefined;
    if (next.value.type === type) return next.value.atMs;
  }
}
