#!/usr/bin/env node
/** `dwcp`: the operator's command line. */
import { defaultNodeName } from '@novacron/consensus';
import { Command, CommanderError, Option } from 'commander';
import { positiveInt } from './arg-parsers';
import { type CliIo, processIo } from './cli-io';
import { type ClusterInitOptions, clusterInit } from './cluster-init';
import { type ClusterDemoOptions, runClusterDemo } from './demo/cluster-demo';
import { CliError, EXIT, EXIT_CODES_HELP, errorLines, exitCodeOf, usageError } from './exit-codes';
import { runHdeDemo } from './hde-demo';
import { registerMigrateCommands } from './migrate-commands';
import { type NodeStopOptions, nodeStop } from './node-stop';
import { registerVmCommands } from './vm-commands';

type ClusterDemoCliOptions = Omit<ClusterDemoOptions, 'link' | 'hypervisor'> & {
  link: string;
  hypervisor: string;
};

function oneOf<T extends string>(flag: string, value: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value))
    throw usageError(`${flag} must be one of ${allowed.join(', ')}`);
  return value as T;
}

/** The whole command tree; usage errors throw a CommanderError rather than exiting (see runCli). */
export function buildProgram(io: CliIo = processIo()): Command {
  const line = (text: string) => io.out(`${text}\n`);
  const program = new Command('dwcp')
    .description('NovaCron DWCP v3: live migration of running VMs')
    .version('0.1.0')
    // Set before the subcommands are added, which inherit them. Positional options: a flag after a
    // subcommand belongs to that subcommand (`migrate` and `migrate cancel` both take --api).
    .enablePositionalOptions()
    .exitOverride()
    .configureOutput({ writeOut: io.out, writeErr: io.err })
    .addHelpText('after', EXIT_CODES_HELP);
  program
    .command('demo')
    .description(
      'start a 3-node cluster here, boot the test guest on node 2 and live-migrate it to node 3 (over the emulated internet as root, loopback otherwise); report against QEMU alone',
    )
    .option('--link <kind>', 'auto | internet | loopback', 'auto')
    .option('--hypervisor <kind>', 'auto | qemu | simulated', 'auto')
    .option('--data-dir <dir>', "the demo cluster's data (wiped at start)", '.dwcp/demo-cluster')
    .option('--memory-mib <n>', "the guest's RAM", positiveInt, 128)
    .option('--no-compare', "skip QEMU's own migration for comparison")
    .addOption(new Option('--in-namespaces').hideHelp())
    .action(async (o: ClusterDemoCliOptions) => {
      const link = oneOf('--link', o.link, ['auto', 'internet', 'loopback'] as const);
      const hypervisor = oneOf('--hypervisor', o.hypervisor, ['auto', 'qemu', 'simulated'] as const);
      const code = await runClusterDemo({ ...o, link, hypervisor }, io);
      if (code !== 0) throw new CliError('ERR_DEMO', 'the demo did not complete its migrations', code);
    });
  program
    .command('demo-hde')
    .description('show HDE on a VM-memory-like sample: chunk, dedup, compress, verify')
    .option('--size-mib <n>', 'sample size in MiB', positiveInt, 128)
    .option('--input <file>', 'use this file (e.g. a captured QEMU migration stream) instead of the sample')
    .option(
      '--data-dir <dir>',
      "the chunk store is <dir>/chunks; a node's data dir shows dedup against what it holds",
      '.dwcp/demo',
    )
    .action(async (opts: { sizeMib: number; input?: string; dataDir: string }) => {
      await runHdeDemo(opts, line);
    });
  const node = program.command('node').description("run this host's DWCP node");
  node
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
      await runNode(command.args, io.env);
    });
  node
    .command('stop')
    .description('shut down the node daemon running on --data-dir; its VMs keep running unless --stop-vms')
    .option('--data-dir <dir>', 'the node data directory', './.dwcp')
    .option('--stop-vms', 'stop the VMs too', false)
    .action((opts: NodeStopOptions) => nodeStop(opts, line));
  program
    .command('cluster')
    .description('create and inspect clusters')
    .command('init')
    .description('make --data-dir the first member of a new cluster: a CA, an admin token and a join token')
    .option('--data-dir <dir>', 'the node data directory', './.dwcp')
    .option('--node-name <name>', "this node's name (in its certificate)", defaultNodeName())
    .option('--cluster-name <name>', 'the cluster name (in the CA)', 'dwcp')
    .action((opts: ClusterInitOptions) => clusterInit(opts, line));
  registerVmCommands(program, io);
  registerMigrateCommands(program, io);
  return program;
}

/** Runs one command line (without the node and script paths) and returns its exit code; errors go to io.err. */
export async function runCli(argv: readonly string[], io: CliIo = processIo()): Promise<number> {
  try {
    await buildProgram(io).parseAsync([...argv], { from: 'user' });
    return EXIT.ok;
  } catch (e) {
    // Commander has already printed its usage message; --help and --version end with 0.
    if (e instanceof CommanderError) return e.exitCode === 0 ? EXIT.ok : EXIT.usage;
    io.err(
      errorLines(e)
        .map((l) => `${l}\n`)
        .join(''),
    );
    return exitCodeOf(e);
  }
}

async function main(): Promise<void> {
  const code = await runCli(process.argv.slice(2));
  // On success the process ends by itself, so `dwcp node start` keeps serving.
  if (code !== EXIT.ok) process.exit(code);
}

if (require.main === module) void main();
