/** Following an outgoing migration by polling `query-migrate`, as the CLI and metrics need it. */

import { setTimeout as sleep } from 'node:timers/promises';
import type { HypervisorDriver, VmHandle } from './driver';
import { FINAL_MIGRATION_STATUSES, type MigrationProgress } from './migration';

/**
 * Yields a reading every `intervalMs` until the migration completes, fails or is cancelled; the
 * final reading is the last one yielded. Stop early by breaking out of the loop.
 */
export async function* followMigration(
  driver: Pick<HypervisorDriver, 'queryMigrate'>,
  vm: VmHandle,
  options: { intervalMs?: number } = {},
): AsyncGenerator<MigrationProgress> {
  for (;;) {
    const progress = await driver.queryMigrate(vm);
    yield progress;
    if (FINAL_MIGRATION_STATUSES.has(progress.status)) return;
    await sleep(options.intervalMs ?? 200);
  }
}
