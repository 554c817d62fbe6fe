/**
 * A guest's serial console as QEMU writes it to a file, followed line by line as it grows (inotify
 * through fs.watch): QEMU never waits for a reader, so the guest's output is whole across a restart
 * of whatever reads it, and a reader that starts later reads what it missed from the file.
 */

import { type FSWatcher, watch } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { LineSplitter } from './serial-console';

const READ_BYTES = 64 * 1024;

export class ConsoleFile {
  private readonly splitter = new LineSplitter();
  private watcher: FSWatcher | undefined;
  private reading: Promise<void> | undefined;
  private again = false;
  private closed = false;
  /** Lines before this offset's first newline are a partial line and are skipped. */
  private skipPartial: boolean;

  private constructor(
    private readonly file: FileHandle,
    private offset: number,
    private readonly onLine: (line: string) => void,
  ) {
    this.skipPartial = offset > 0;
  }

  /**
   * Follows `path` from its start, or from its last `tailBytes` (a reader taking over a long-running
   * guest's console). The file must exist: QEMU creates it before it serves QMP.
   */
  static async follow(
    path: string,
    onLine: (line: string) => void,
    options: { tailBytes?: number } = {},
  ): Promise<ConsoleFile> {
    const file = await open(path, 'r');
    const { size } = await file.stat();
    const start = options.tailBytes === undefined ? 0 : Math.max(0, size - options.tailBytes);
    const reader = new ConsoleFile(file, start, onLine);
    reader.watcher = watch(path, { persistent: false }, () => reader.poke());
    reader.poke();
    return reader;
  }

  /** Reads what has been written so far (the file may have grown since the last change event). */
  drain(): Promise<void> {
    this.poke();
    return this.reading ?? Promise.resolve();
  }

  /** Stops following; with `flush`, the unterminated last line is delivered too (the writer is gone). */
  async close(options: { flush?: boolean } = {}): Promise<void> {
    if (this.closed) return;
    await this.drain();
    this.closed = true;
    this.watcher?.close();
    if (options.flush) for (const line of this.splitter.flush()) this.onLine(line);
    await this.file.close().catch(() => undefined);
  }

  private poke(): void {
    if (this.closed) return;
    if (this.reading) {
      this.again = true;
      return;
    }
    this.reading = this.readToEnd().finally(() => {
      this.reading = undefined;
      if (this.again) {
        this.again = false;
        this.poke();
      }
    });
  }

  private async readToEnd(): Promise<void> {
    const buffer = Buffer.alloc(READ_BYTES);
    for (;;) {
      if (this.closed) return;
      const { bytesRead } = await this.file.read(buffer, 0, READ_BYTES, this.offset).catch(() => ({
        bytesRead: 0,
      }));
      if (bytesRead === 0) return;
      this.offset += bytesRead;
      for (const line of this.splitter.push(buffer.subarray(0, bytesRead))) {
        if (this.skipPartial) {
          this.skipPartial = false;
          continue;
        }
        this.onLine(line);
      }
    }
  }
}
