#!/usr/bin/env node
/** `dwcp`: the operator's command line. */
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { runHdeDemo } from './hde-demo';

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0) throw new InvalidArgumentError('must be a positive whole number');
  return n;
}

export function buildProgram(): Command {
  const program = new Command('dwcp')
    .description('NovaCron DWCP v3: live migration of running VMs')
    .version('0.1.0');
  program
    .command('demo')
    .description('show HDE on a VM-memory-like sample: chunk, dedup, compress, verify')
    .option('--size-mib <n>', 'sample size in MiB', positiveInt, 128)
    .option('--input <file>', 'use this file (e.g. a captured QEMU migration stream) instead of the sample')
    .option('--data-dir <dir>', 'where the demo chunk store lives', '.dwcp/demo')
    .action(async (opts: { sizeMib: number; input?: string; dataDir: string }) => {
      await runHdeDemo(opts, (line) => process.stdout.write(`${line}\n`));
    });
  return program;
}

async function main(): Promise<void> {
  const program = buildProgram().exitOverride();
  try {
    await program.parseAsync(process.argv);
  } catch (e) {
    if (e instanceof CommanderError) process.exit(e.exitCode);
    const code = (e as { code?: unknown }).code;
    process.stderr.write(`dwcp: ${typeof code === 'string' ? `${code}: ` : ''}${(e as Error).message}\n`);
    process.exit(1);
  }
}

if (require.main === module) void main();
