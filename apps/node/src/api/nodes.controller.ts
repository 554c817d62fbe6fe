/** REST: /v1/nodes */
import { Controller, Delete, Get, HttpCode, Inject, Param, Post, Query } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiQuery, ApiTags } from '@nestjs/swagger';
import { RequireRole } from '../auth/roles';
import { ControlPlaneService } from './control-plane.service';
import { type ReadQuery, readQuerySchema } from './schemas';
import { ZodPipe } from './zod-pipe';

const consistencyQuery = ApiQuery({ name: 'consistency', required: false, enum: ['linearizable', 'local'] });

@ApiTags('nodes')
@ApiBearerAuth()
@Controller('v1/nodes')
export class NodesController {
  constructor(@Inject(ControlPlaneService) private readonly cp: ControlPlaneService) {}

  @Get()
  @RequireRole('viewer')
  @ApiOperation({ summary: 'List the nodes, removed ones included' })
  @consistencyQuery
  async list(@Query(new ZodPipe(readQuerySchema, 'query')) q: ReadQuery) {
    return { items: await this.cp.listNodes(q.consistency) };
  }

  @Get(':id')
  @RequireRole('viewer')
  @ApiOperation({ summary: 'Get a node' })
  @consistencyQuery
  get(@Param('id') id: string, @Query(new ZodPipe(readQuerySchema, 'query')) q: ReadQuery) {
    return this.cp.getNode(id, q.consistency);
  }

  @Post(':id/drain')
  @HttpCode(200)
  @RequireRole('admin')
  @ApiOperation({ summary: 'Stop placing new VMs on a node' })
  drain(@Param('id') id: string) {
    return this.cp.drainNode(id);
  }

  @Delete(':id')
  @RequireRole('admin')
  @ApiOperation({ summary: 'Remove a node from the Raft configuration and mark it removed' })
  remove(@Param('id') id: string) {
    return this.cp.removeNode(id);
  }
}
