/** `dwcp migrate <vm> --to <node>` and `dwcp migrate cancel|list|get`: live migrations through /v1/migrations. */
import type { MigrationRecord } from '@novacron/cluster-state';
import type { Command } from 'commander';
import { type ApiOptions, addApiOptions, withApi } from './api-target';
import { positiveInt, positiveNumber } from './arg-parsers';
import type { CliIo } from './cli-io';
import { CliError, EXIT, EXIT_CODES_HELP, usageError } from './exit-codes';
import { findNode, findVm } from './lookup';
import { followMigration } from './migration-follow';
import { migrationDetails, progressCell, summaryLines } from './migration-progress';
import { table } from './text-output';

type Opts = ApiOptions & { json?: boolean };

/** Exit 7 or 8 for a migration that ended failed or cancelled; nothing for done. */
function outcomeError(record: MigrationRecord): CliError | undefined {
  const why = record.reason === undefined ? '' : `: ${record.reason}`;
  if (record.phase === 'failed') {
    return new CliError('ERR_MIGRATION_FAILED', `migration ${record.id} failed${why}`, EXIT.migrationFailed);
  }
  if (record.phase === 'cancelled') {
    return new CliError(
      'ERR_MIGRATION_CANCELLED',
      `migration ${record.id} was cancelled${why}`,
      EXIT.migrationCancelled,
    );
  }
  return undefined;
}

/** The policy fields the operator set; the cluster's defaults stand for the rest. */
function policyOf(o: { autoConverge: boolean; completionTimeoutPerGib?: number }): {
  policy?: { autoConverge?: boolean; completionTimeoutPerGiBSec?: number };
} {
  const policy = {
    ...(o.autoConverge ? {} : { autoConverge: false }),
    ...(o.completionTimeoutPerGib === undefined
      ? {}
      : { completionTimeoutPerGiBSec: o.completionTimeoutPerGib }),
  };
  return Object.keys(policy).length > 0 ? { policy } : {};
}

/** A subcommand's flags plus those given to `migrate` before it (`dwcp migrate --api <url> list`). */
function withMigrateFlags<T>(cmd: Command): Opts & T {
  return cmd.optsWithGlobals<Opts & T>();
}

export function registerMigrateCommands(program: Command, io: CliIo): void {
  const print = (lines: string[]) => io.out(lines.map((l) => `${l}\n`).join(''));
  const migrate = addApiOptions(
    program
      .command('migrate')
      .description(
        'live-migrate a running VM to another node and follow it to the end (Ctrl-C asks the cluster to cancel it)',
      )
      .argument('<vm>', 'VM id or name (a VM named like a subcommand needs its id)')
      .option('--to <node>', 'the target node (id or name)')
      .option('--no-wait', 'print the migration id once it is created, without following it')
      .option(
        '--max-bandwidth <MiB/s>',
        "cap QEMU's migration bandwidth (MiB/s); default: chosen from the path",
        positiveNumber,
      )
      .option(
        '--no-auto-converge',
        'never throttle the guest: a guest that dirties memory faster than the path carries it fails at the completion timeout instead',
      )
      .option(
        '--completion-timeout-per-gib <seconds>',
        'fail, leaving the VM on its source, past this many seconds per GiB of guest RAM (default 150)',
        positiveInt,
      ),
  )
    .option('--json', 'print JSON (while following: one JSON record per change)')
    .addHelpText('after', EXIT_CODES_HELP)
    .action(
      (
        ref: string,
        o: Opts & {
          to?: string;
          wait: boolean;
          maxBandwidth?: number;
          autoConverge: boolean;
          completionTimeoutPerGib?: number;
        },
      ) =>
        withApi(o, io.env, async (client) => {
          if (o.to === undefined) throw usageError("required option '--to <node>' not specified");
          const vm = await findVm(client, ref);
          const target = await findNode(client, o.to);
          const created = await client.post<MigrationRecord>('/v1/migrations', {
            vmId: vm.id,
            targetNodeId: target.id,
            ...(o.maxBandwidth === undefined
              ? {}
              : { maxBandwidthBytesPerSec: Math.round(o.maxBandwidth * 1024 * 1024) }),
            ...policyOf(o),
          });
          if (!o.wait) return print([o.json ? JSON.stringify(created, null, 2) : created.id]);
          if (!o.json) {
            print([
              `migrating VM ${vm.name} (${vm.id}) from ${created.sourceNodeId} to ${target.id}: ${created.id}`,
            ]);
          }
          const end = await followMigration(client, created, io, { json: o.json === true });
          if (!o.json) print(summaryLines(end));
          const failure = outcomeError(end);
          if (failure) throw failure;
        }),
    );

  const sub = (name: string, description: string) =>
    addApiOptions(migrate.command(name).description(description)).option('--json', 'print JSON');

  sub('cancel', 'cancel a migration that has not begun switching over')
    .argument('<migration>', 'migration id')
    .option('--reason <text>', 'why (kept in the migration record)')
    .action((id: string, _o: unknown, cmd: Command) => {
      const o = withMigrateFlags<{ reason?: string }>(cmd);
      return withApi(o, io.env, async (client) => {
        const cancelled = await client.post<MigrationRecord>(
          `/v1/migrations/${encodeURIComponent(id)}/cancel`,
          o.reason === undefined ? {} : { reason: o.reason },
        );
        print(
          o.json
            ? [JSON.stringify(cancelled, null, 2)]
            : [`migration ${cancelled.id} cancelled: ${cancelled.reason ?? ''}`.trimEnd()],
        );
      });
    });

  sub('list', 'list migrations, finished ones included').action((_o: unknown, cmd: Command) => {
    const o = withMigrateFlags(cmd);
    return withApi(o, io.env, async (client) => {
      const { items } = await client.get<{ items: MigrationRecord[] }>('/v1/migrations');
      if (o.json) return print([JSON.stringify(items, null, 2)]);
      if (items.length === 0) return print(['no migrations']);
      print(
        table(
          ['ID', 'VM', 'FROM', 'TO', 'PHASE', 'PROGRESS', 'UPDATED'],
          // Oldest first, so the latest migration is the last line.
          [...items]
            .sort((a, b) => a.createdAt.localeCompare(b.createdAt))
            .map((m) => [
              m.id,
              m.vmId,
              m.sourceNodeId,
              m.targetNodeId,
              m.phase,
              progressCell(m),
              m.updatedAt,
            ]),
        ),
      );
    });
  });

  sub('get', 'show one migration')
    .argument('<migration>', 'migration id')
    .action((id: string, _o: unknown, cmd: Command) => {
      const o = withMigrateFlags(cmd);
      return withApi(o, io.env, async (client) => {
        const m = await client.get<MigrationRecord>(`/v1/migrations/${encodeURIComponent(id)}`);
        print(o.json ? [JSON.stringify(m, null, 2)] : migrationDetails(m));
      });
    });
}
