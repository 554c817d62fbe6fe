/** The REST contract of /v1/vms (see contract.ts). */
import type { ApiOperation } from './contract';
import { consoleSchema, listOf, vmRecordSchema } from './responses';
import { consoleQuerySchema, createVmSchema, idParams, readQuerySchema, updateLabelsSchema } from './schemas';
import { READ_ERRORS, WRITE_ERRORS } from './store-errors';

const vmId = idParams('A VM id (`vm-<id>`); one of any other shape names no VM.');
const tag = 'vms';
const changed = (description: string) => ({ status: 200 as const, description, schema: vmRecordSchema });

export const vmOperations = {
  create: {
    method: 'post',
    path: '/v1/vms',
    tag,
    summary: 'Create a VM (stopped); placement picks the node unless nodeId is given',
    access: 'operator',
    body: createVmSchema,
    success: { status: 201, description: 'The new VM.', schema: vmRecordSchema },
    errors: {
      404: 'The nodeId names no node.',
      409: 'The name is taken, the chosen node is not ready or too small, or no node has room.',
      ...WRITE_ERRORS,
    },
  },
  list: {
    method: 'get',
    path: '/v1/vms',
    tag,
    summary: 'List VMs',
    access: 'viewer',
    query: readQuerySchema,
    success: { status: 200, description: 'The VMs.', schema: listOf(vmRecordSchema, 'VmList') },
    errors: READ_ERRORS,
  },
  get: {
    method: 'get',
    path: '/v1/vms/{id}',
    tag,
    summary: 'Get a VM',
    access: 'viewer',
    params: vmId,
    query: readQuerySchema,
    success: { status: 200, description: 'The VM.', schema: vmRecordSchema },
    errors: { 404: 'No such VM.', ...READ_ERRORS },
  },
  start: {
    method: 'post',
    path: '/v1/vms/{id}/start',
    tag,
    summary: 'Start a VM',
    access: 'operator',
    params: vmId,
    success: changed('The VM, now running.'),
    errors: { 404: 'No such VM.', 409: 'The VM is migrating, or its node was removed.', ...WRITE_ERRORS },
  },
  stop: {
    method: 'post',
    path: '/v1/vms/{id}/stop',
    tag,
    summary: 'Stop a VM',
    access: 'operator',
    params: vmId,
    success: changed('The VM, now stopped.'),
    errors: { 404: 'No such VM.', 409: 'The VM is migrating, or its node was removed.', ...WRITE_ERRORS },
  },
  remove: {
    method: 'delete',
    path: '/v1/vms/{id}',
    tag,
    summary: 'Delete a VM (refused while it migrates)',
    access: 'operator',
    params: vmId,
    success: changed('The VM as it was, with state `deleted`.'),
    errors: { 404: 'No such VM.', 409: 'The VM is migrating or has an active migration.', ...WRITE_ERRORS },
  },
  labels: {
    method: 'patch',
    path: '/v1/vms/{id}/labels',
    tag,
    summary: 'Set or delete labels, optionally only if current values match `expect` (null = must be absent)',
    access: 'operator',
    params: vmId,
    body: updateLabelsSchema,
    success: changed('The VM with its new labels.'),
    errors: {
      404: 'No such VM.',
      409: 'A label does not hold the value `expect` gives (`fields` names it); nothing changed.',
      ...WRITE_ERRORS,
    },
  },
  console: {
    method: 'get',
    path: '/v1/vms/{id}/console',
    tag,
    summary:
      "The last lines of a VM's serial console; only the node that runs the VM has them (409 names it)",
    access: 'operator',
    params: vmId,
    query: consoleQuerySchema,
    success: { status: 200, description: 'The last `tail` lines.', schema: consoleSchema },
    errors: {
      404: 'No such VM.',
      409: 'The VM does not run on this node; the message names the one it runs on.',
    },
  },
} satisfies Record<string, ApiOperation>;
