/**
 * Runs once before any test file: builds the test guest if it is missing, so the many QEMU test
 * files that run in parallel do not all start test/guest/build.sh (and apt) at the same time.
 * Without root the build cannot run; the QEMU tests then build or skip on their own terms.
 */
import { ensureGuestBuilt } from './guest/guest';

export default async function setup(): Promise<void> {
  if (process.getuid?.() !== 0) return;
  await ensureGuestBuilt();
}
