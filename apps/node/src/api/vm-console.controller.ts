/** REST: GET /v1/vms/:id/console, the tail of a VM's serial console, served by the node that runs it. */
import { Controller, Inject, Optional, Param, Query } from '@nestjs/common';
import { DomainError } from '@novacron/cluster-state';
import type { VmHost } from '@novacron/host';
import { VM_HOST } from '../tokens';
import { Operation } from './contract';
import { ControlPlaneService } from './control-plane.service';
import type { ConsoleQuery, IdParams } from './schemas';
import { vmOperations } from './vms.contract';
import { ZodPipe } from './zod-pipe';

const op = vmOperations.console;

@Controller()
export class VmConsoleController {
  constructor(
    @Inject(ControlPlaneService) private readonly cp: ControlPlaneService,
    @Optional() @Inject(VM_HOST) private readonly host?: VmHost,
  ) {}

  @Operation(op)
  async console(
    @Param(new ZodPipe(op.params, 'path')) p: IdParams,
    @Query(new ZodPipe(op.query, 'query')) q: ConsoleQuery,
  ) {
    const vm = await this.cp.getVm(p.id, 'local');
    const lines = this.host?.console(vm.id);
    if (lines === undefined) {
      const node = await this.cp.getNode(vm.nodeId, 'local').catch(() => undefined);
      throw new DomainError(
        'ERR_CONFLICT',
        `VM ${vm.id} does not run on this node; it is ${vm.state} on ${vm.nodeId}${node?.apiUrl ? ` (${node.apiUrl})` : ''}`,
      );
    }
    return { vmId: vm.id, nodeId: vm.nodeId, lines: lines.slice(-q.tail) };
  }
}
