/** `dwcp vm create|list|get|start|stop|delete`: VMs through /v1/vms. */
import type { VmRecord } from '@novacron/cluster-state';
import { type Command, InvalidArgumentError } from 'commander';
import { type ApiOptions, addApiOptions, withApi } from './api-target';
import { wholeNumber } from './arg-parsers';
import type { CliIo } from './cli-io';
import { type DiskRequest, diskOption } from './disk-option';
import { findNode, findVm } from './lookup';
import { formatLabels, keyValues, NONE, table } from './text-output';

type Opts = ApiOptions & { json?: boolean };

/** Whole numbers only; the API judges the range and names the field when it refuses. */
function label(value: string, previous: Record<string, string>): Record<string, string> {
  const eq = value.indexOf('=');
  if (eq <= 0) throw new InvalidArgumentError('must be key=value');
  return { ...previous, [value.slice(0, eq)]: value.slice(eq + 1) };
}

/** What the VM's node reports it does: `failed (why)`, `running (pid 4242)`; the desired state is `state`. */
function statusText(vm: VmRecord): string {
  const s = vm.status;
  if (s === undefined) return 'not reported yet';
  if (s.reason !== undefined) return `${s.phase} (${s.reason})`;
  return s.pid !== undefined ? `${s.phase} (pid ${s.pid})` : s.phase;
}

function vmDetails(vm: VmRecord): string[] {
  return keyValues([
    ['id', vm.id],
    ['name', vm.name],
    ['state', vm.state],
    ['status', statusText(vm)],
    ...(vm.status !== undefined
      ? [['since', `${vm.status.since} (reported by ${vm.status.nodeId})`] as const]
      : []),
    ['node', vm.nodeId],
    ['vcpus', String(vm.vcpus)],
    ['memory', `${vm.memoryMiB} MiB`],
    ['image', vm.image],
    ['labels', formatLabels(vm.labels)],
    ...(vm.disks ?? []).map((d): [string, string] => [
      `disk ${d.id}`,
      `${d.sizeBytes / 2 ** 30 >= 1 ? `${d.sizeBytes / 2 ** 30} GiB` : `${d.sizeBytes / 2 ** 20} MiB`} ${d.format} ${d.bus}${d.image ? ` on ${d.image}` : ''}`,
    ]),
    ['created', vm.createdAt],
  ]);
}

export function registerVmCommands(program: Command, io: CliIo): void {
  const print = (lines: string[]) => io.out(lines.map((l) => `${l}\n`).join(''));
  const printVm = (vm: VmRecord, o: Opts) => print(o.json ? [JSON.stringify(vm, null, 2)] : vmDetails(vm));
  const vm = program.command('vm').description('create, list, inspect, start, stop and delete VMs');
  const command = (name: string, description: string) =>
    addApiOptions(vm.command(name).description(description)).option('--json', 'print JSON');

  command('create', 'create a VM (stopped unless --start); placement picks the node unless --node is given')
    .requiredOption('--name <name>', 'the VM name (unique in the cluster)')
    .requiredOption('--image <image>', "the VM's image (its kernel, or a disk to boot from)")
    .requiredOption('--vcpus <n>', 'virtual CPUs', wholeNumber)
    .requiredOption('--memory-mib <n>', 'guest memory in MiB', wholeNumber)
    .option('--node <node>', 'place it on this node (id or name)')
    .option('--label <key=value>', 'a label; repeat for more', label, {})
    .option(
      '--disk <size[,image=NAME][,format=qcow2|raw][]>',
      'a disk (4G, 512M, ...), a qcow2 overlay on image NAME or blank; repeat for more (vda, vdb, ...)',
      diskOption,
    )
    .option('--start', 'start it once created')
    .action(
      (
        o: Opts & {
          name: string;
          image: string;
          vcpus: number;
          memoryMib: number;
          node?: string;
          label: Record<string, string>;
          disk?: DiskRequest[];
          start?: boolean;
        },
      ) =>
        withApi(o, io.env, async (client) => {
          const nodeId = o.node === undefined ? undefined : (await findNode(client, o.node)).id;
          let created = await client.post<VmRecord>('/v1/vms', {
            name: o.name,
            image: o.image,
            vcpus: o.vcpus,
            memoryMiB: o.memoryMib,
            ...(Object.keys(o.label).length > 0 ? { labels: o.label } : {}),
            ...(o.disk !== undefined ? { disks: o.disk } : {}),
            ...(nodeId !== undefined ? { nodeId } : {}),
          });
          if (o.start) created = await client.post<VmRecord>(`/v1/vms/${created.id}/start`);
          printVm(created, o);
        }),
    );

  command('list', 'list the VMs').action((o: Opts) =>
    withApi(o, io.env, async (client) => {
      const { items } = await client.get<{ items: VmRecord[] }>('/v1/vms');
      if (o.json) return print([JSON.stringify(items, null, 2)]);
      if (items.length === 0) return print(['no VMs']);
      print(
        table(
          ['ID', 'NAME', 'STATE', 'STATUS', 'NODE', 'VCPUS', 'MEMORY', 'IMAGE'],
          items.map((v) => [
            v.id,
            v.name,
            v.state,
            v.status?.phase ?? NONE,
            v.nodeId,
            String(v.vcpus),
            `${v.memoryMiB} MiB`,
            v.image,
          ]),
        ),
      );
    }),
  );

  command('get', 'show one VM')
    .argument('<vm>', 'VM id or name')
    .action((ref: string, o: Opts) =>
      withApi(o, io.env, async (client) => printVm(await findVm(client, ref), o)),
    );

  for (const [verb, description] of [
    ['start', 'start a VM'],
    ['stop', 'stop a VM'],
  ] as const) {
    command(verb, description)
      .argument('<vm>', 'VM id or name')
      .action((ref: string, o: Opts) =>
        withApi(o, io.env, async (client) => {
          const { id } = await findVm(client, ref);
          printVm(await client.post<VmRecord>(`/v1/vms/${encodeURIComponent(id)}/${verb}`), o);
        }),
      );
  }

  command('delete', 'delete a VM (refused while it migrates)')
    .argument('<vm>', 'VM id or name')
    .action((ref: string, o: Opts) =>
      withApi(o, io.env, async (client) => {
        const { id, name } = await findVm(client, ref);
        const deleted = await client.delete<VmRecord>(`/v1/vms/${encodeURIComponent(id)}`);
        print(o.json ? [JSON.stringify(deleted, null, 2)] : [`deleted VM ${name} (${id})`]);
      }),
    );
}
