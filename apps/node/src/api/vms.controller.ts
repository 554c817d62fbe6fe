/** REST: /v1/vms */
import { Body, Controller, Delete, Get, HttpCode, Inject, Param, Patch, Post, Query } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiOperation, ApiQuery, ApiTags } from '@nestjs/swagger';
import { RequireRole } from '../auth/roles';
import { ControlPlaneService } from './control-plane.service';
import {
  type CreateVmRequest,
  createVmSchema,
  type ReadQuery,
  readQuerySchema,
  type UpdateLabelsRequest,
  updateLabelsSchema,
} from './schemas';
import { ZodPipe } from './zod-pipe';

const consistencyQuery = ApiQuery({ name: 'consistency', required: false, enum: ['linearizable', 'local'] });
const labelMap = { type: 'object', additionalProperties: { type: 'string' } } as const;
const nullableLabelMap = {
  type: 'object',
  additionalProperties: { type: 'string', nullable: true },
} as const;

@ApiTags('vms')
@ApiBearerAuth()
@Controller('v1/vms')
export class VmsController {
  constructor(@Inject(ControlPlaneService) private readonly cp: ControlPlaneService) {}

  @Post()
  @RequireRole('operator')
  @ApiOperation({ summary: 'Create a VM (stopped); placement picks the node unless nodeId is given' })
  @ApiBody({
    schema: {
      type: 'object',
      required: ['name', 'image', 'vcpus', 'memoryMiB'],
      additionalProperties: false,
      properties: {
        name: { type: 'string' },
        image: { type: 'string' },
        vcpus: { type: 'integer', minimum: 1 },
        memoryMiB: { type: 'integer', minimum: 1 },
        labels: labelMap,
        nodeId: { type: 'string' },
      },
    },
  })
  create(@Body(new ZodPipe(createVmSchema, 'body')) body: CreateVmRequest) {
    return this.cp.createVm(body);
  }

  @Get()
  @RequireRole('viewer')
  @ApiOperation({ summary: 'List VMs' })
  @consistencyQuery
  async list(@Query(new ZodPipe(readQuerySchema, 'query')) q: ReadQuery) {
    return { items: await this.cp.listVms(q.consistency) };
  }

  @Get(':id')
  @RequireRole('viewer')
  @ApiOperation({ summary: 'Get a VM' })
  @consistencyQuery
  get(@Param('id') id: string, @Query(new ZodPipe(readQuerySchema, 'query')) q: ReadQuery) {
    return this.cp.getVm(id, q.consistency);
  }

  @Post(':id/start')
  @HttpCode(200)
  @RequireRole('operator')
  @ApiOperation({ summary: 'Start a VM' })
  start(@Param('id') id: string) {
    return this.cp.startVm(id);
  }

  @Post(':id/stop')
  @HttpCode(200)
  @RequireRole('operator')
  @ApiOperation({ summary: 'Stop a VM' })
  stop(@Param('id') id: string) {
    return this.cp.stopVm(id);
  }

  @Delete(':id')
  @RequireRole('operator')
  @ApiOperation({ summary: 'Delete a VM (refused while it migrates)' })
  remove(@Param('id') id: string) {
    return this.cp.deleteVm(id);
  }

  @Patch(':id/labels')
  @RequireRole('operator')
  @ApiOperation({
    summary: 'Set or delete labels, optionally only if current values match `expect` (null = must be absent)',
  })
  @ApiBody({
    schema: {
      type: 'object',
      required: ['set'],
      additionalProperties: false,
      properties: { set: nullableLabelMap, expect: nullableLabelMap },
    },
  })
  labels(@Param('id') id: string, @Body(new ZodPipe(updateLabelsSchema, 'body')) body: UpdateLabelsRequest) {
    return this.cp.updateVmLabels(id, body);
  }
}
