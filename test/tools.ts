/**
 * Why a test that needs a system tool cannot run here, for `describe.skipIf`. As root nothing is
 * skipped: `npm test` has run test/tools/install.sh, so a tool still missing is a failure, not a skip.
 */
import { execFileSync } from 'node:child_process';
import { describe } from 'vitest';

/** The Debian package test/tools/install.sh installs for each command. */
const PACKAGE: Record<string, string> = {
  go: 'golang-go',
  'qemu-system-x86_64': 'qemu-system-x86',
  ip: 'iproute2',
};

function onPath(command: string): boolean {
  try {
    execFileSync('sh', ['-c', 'command -v "$1"', 'sh', command], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Null when every command is on PATH or this is root; otherwise the reason to skip, naming the fix. */
export function missingTools(...commands: string[]): string | null {
  if (process.getuid?.() === 0) return null;
  const missing = commands.filter((c) => !onPath(c));
  if (missing.length === 0) return null;
  const packages = missing.map((c) => PACKAGE[c] ?? c).join(' ');
  return `${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} not installed (run as root or apt-get install ${packages})`;
}

/** `describe`, or a skipped one whose title carries the reason, so the runner's output says why. */
export function describeUnless(skip: string | null): (title: string, body: () => void) => void {
  return (title, body) =>
    describe.skipIf(skip !== null)(skip === null ? title : `${title} (skipped: ${skip})`, body);
}
