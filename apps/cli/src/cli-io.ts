/** What a command may touch of its process: output streams, environment, terminal, Ctrl-C and the clock. Tests pass their own. */

export interface CliIo {
  /** Writes to stdout as given (add the newline yourself). */
  out(text: string): void;
  err(text: string): void;
  env: NodeJS.ProcessEnv;
  /** True when stdout is a terminal: progress is redrawn in place rather than printed line by line. */
  isTTY: boolean;
  /** The terminal's width, when known; a redrawn line is cut to fit it. */
  columns?: number;
  /** Calls `handler` on every Ctrl-C until the returned function is called. */
  onInterrupt(handler: () => void): () => void;
  sleep(ms: number): Promise<void>;
  /** How often `dwcp migrate` reads the migration while it follows one. */
  pollIntervalMs: number;
}

export function processIo(): CliIo {
  return {
    out: (text) => process.stdout.write(text),
    err: (text) => process.stderr.write(text),
    env: process.env,
    isTTY: process.stdout.isTTY === true,
    ...(process.stdout.columns ? { columns: process.stdout.columns } : {}),
    onInterrupt: (handler) => {
      process.on('SIGINT', handler);
      return () => process.off('SIGINT', handler);
    },
    sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
    pollIntervalMs: 500,
  };
}
