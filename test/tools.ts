/**
 * Why a test that needs a system tool cannot run here, for `describe.skipIf`. As root nothing is
 * skipped: `npm test` has run test/tools/install.sh, so a tool still missing is a failure, not a skip.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe } from 'vitest';

const INSTALL = join(__dirname, 'tools', 'install.sh');

/** Null when every command is there or this is root; otherwise the reason to skip, naming the fix. */
export function missingTools(...commands: string[]): string | null {
  if (process.getuid?.() === 0) return null;
  // install.sh knows each tool's package: one line "tool<tab>how to install it" per missing one.
  const missing = execFileSync(INSTALL, ['--missing', ...commands], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.split('\t'));
  if (missing.length === 0) return null;
  const names = missing.map(([tool]) => tool).join(', ');
  const how = missing.map(([, fix]) => fix).join('; ');
  return `${names} ${missing.length === 1 ? 'is' : 'are'} not installed (run as root or ${how})`;
}

/** `describe`, or a skipped one whose title carries the reason, so the runner's output says why. */
export function describeUnless(skip: string | null): (title: string, body: () => void) => void {
  return (title, body) =>
    describe.skipIf(skip !== null)(skip === null ? title : `${title} (skipped: ${skip})`, body);
}
