/** REST: GET /v1/vms/:id/console, the tail of a VM's serial console, served by the node that runs it. */
import { Controller, Get, Inject, Param, Query } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiQuery, ApiTags } from '@nestjs/swagger';
import { DomainError } from '@novacron/cluster-state';
import { z } from 'zod';
import { RequireRole } from '../auth/roles';
import type { VmHost } from '../host/vm-host';
import { VM_HOST } from '../tokens';
import { ControlPlaneService } from './control-plane.service';
import { ZodPipe } from './zod-pipe';

const consoleQuerySchema = z.object({ tail: z.coerce.number().int().min(1).max(500).default(100) }).strict();

@ApiTags('vms')
@ApiBearerAuth()
@Controller('v1/vms')
export class VmConsoleController {
  constructor(
    @Inject(ControlPlaneService) private readonly cp: ControlPlaneService,
    @Inject(VM_HOST) private readonly host: VmHost | null,
  ) {}

  @Get(':id/console')
  @RequireRole('operator')
  @ApiOperation({
    summary:
      "The last lines of a VM's serial console; only the node that runs the VM has them (409 names it)",
  })
  @ApiQuery({ name: 'tail', required: false, type: Number })
  async console(
    @Param('id') id: string,
    @Query(new ZodPipe(consoleQuerySchema, 'query')) q: z.infer<typeof consoleQuerySchema>,
  ) {
    const vm = await this.cp.getVm(id, 'local');
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
