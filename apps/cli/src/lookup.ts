/** Turns what an operator types (an id or a name) into the record it names. */
import { fields, type NodeRecord, type VmRecord } from '@novacron/cluster-state';
import type { ApiClient } from './api-client';
import { CliError, EXIT } from './exit-codes';

const notFound = (what: string, ref: string) =>
  new CliError('ERR_NOT_FOUND', `no ${what} has the id or name ${ref}`, EXIT.notFound);

/** An id-shaped reference is read directly; a name (or an id that is not there) is looked up by listing. */
export async function findVm(client: ApiClient, ref: string): Promise<VmRecord> {
  if (fields.vmId.safeParse(ref).success) {
    try {
      return await client.get<VmRecord>(`/v1/vms/${encodeURIComponent(ref)}`);
    } catch (e) {
      // A VM may be named like an id; fall through to the names.
      if (!(e instanceof CliError) || e.exitCode !== EXIT.notFound) throw e;
    }
  }
  const { items } = await client.get<{ items: VmRecord[] }>('/v1/vms');
  const vm = items.find((v) => v.name === ref);
  if (vm === undefined) throw notFound('VM', ref);
  return vm;
}

/** A node by id, or by name among the nodes that were not removed (a name can be reused after removal). */
export async function findNode(client: ApiClient, ref: string): Promise<NodeRecord> {
  const { items } = await client.get<{ items: NodeRecord[] }>('/v1/nodes');
  const node =
    items.find((n) => n.id === ref) ??
    items.find((n) => n.name === ref && n.status !== 'removed') ??
    items.find((n) => n.name === ref);
  if (node === undefined) throw notFound('node', ref);
  return node;
}
