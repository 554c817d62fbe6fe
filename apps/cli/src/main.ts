#!/usr/bin/env node
import { defaultNodeName } from '@novacron/consensus';
/** `dwcp`: the operator's command line. */
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { type ClusterInitOptions, clusterInit } from './cluster-init';
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
  program
    .command('node')
    .description("run this host's DWCP node")
    .command('start')
    .description(
      'start the node daemon; flags (--config <file>, --data-dir, --api-port, --join <url> --join-token <t>, ...) and DWCP_* variables are read by the node, see apps/node',
    )
    .helpOption(false)
    .allowUnknownOption()
    .allowExcessArguments()
    .action(async (_opts: unknown, command: Command) => {
      // Loaded on use: the daemon pulls in Nest and gRPC, which other commands do not need.
      const { runNode } = await import('@novacron/node');
      await runNode(command.args, process.env);
    });
  program
    .command('cluster')
    .description('create and inspect clusters')
    .command('init')
    .description('make --data-dir the first member of a new cluster: a CA, an admin token and a join token')
    .option('--data-dir <dir>', 'the node data directory', './.dwcp')
    .option('--node-name <name>', "this node's name (in its certificate)", defaultNodeName())
    .option('--cluster-name <name>', 'the cluster name (in the CA)', 'dwcp')
    .action((opts: ClusterInitOptions) => clusterInit(opts, (line) => process.stdout.write(`${line}\n`)));
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
