/** The guest's serial console as text lines, and waiting for a line that matters (a heartbeat, a checksum). */

import { HypervisorError } from './errors';

/** Cuts a byte stream into lines; a partial last line waits for the rest of it. */
export class LineSplitter {
  private partial = '';
  private readonly decoder = new TextDecoder();

  /** The lines that `chunk` completes, without line endings (`\r\n` from a tty counts as one). */
  push(chunk: Uint8Array): string[] {
    const text = this.partial + this.decoder.decode(chunk, { stream: true });
    const lines = text.split('\n');
    this.partial = lines.pop() ?? '';
    return lines.map((line) => line.replace(/\r+$/, ''));
  }

  /** The unterminated tail, once the stream has ended. */
  flush(): string[] {
    const rest = (this.partial + this.decoder.decode()).replace(/\r+$/, '');
    this.partial = '';
    return rest === '' ? [] : [rest];
  }
}

/**
 * Reads `lines` until one matches, and returns its match. The iterator stays usable afterwards,
 * except after a timeout, which closes it.
 */
export async function waitForLine(
  lines: AsyncIterator<string>,
  pattern: RegExp,
  options: { timeoutMs: number; what?: string },
): Promise<RegExpMatchArray> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), options.timeoutMs);
  });
  try {
    for (;;) {
      const next = await Promise.race([lines.next(), timedOut]);
      if (next === 'timeout') {
        await lines.return?.();
        throw new HypervisorError(
          'ERR_HV_TIMEOUT',
          `no console line matched ${options.what ?? pattern} within ${options.timeoutMs} ms`,
        );
      }
      if (next.done) {
        throw new HypervisorError(
          'ERR_HV_VM_EXITED',
          `the console ended before a line matched ${options.what ?? pattern}`,
        );
      }
      const match = next.value.match(pattern);
      if (match) return match;
    }
  } finally {
    clearTimeout(timer);
  }
}
