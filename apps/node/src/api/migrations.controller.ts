/** REST: /v1/migrations */
import { Body, Controller, Get, HttpCode, Inject, Param, Post, Query } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiOperation, ApiQuery, ApiTags } from '@nestjs/swagger';
import { RequireRole } from '../auth/roles';
import { ControlPlaneService } from './control-plane.service';
import {
  type CancelMigrationRequest,
  type CreateMigrationRequest,
  cancelMigrationSchema,
  createMigrationSchema,
  type ReadQuery,
  readQuerySchema,
} from './schemas';
import { ZodPipe } from './zod-pipe';

const consistencyQuery = ApiQuery({ name: 'consistency', required: false, enum: ['linearizable', 'local'] });

@ApiTags('migrations')
@ApiBearerAuth()
@Controller('v1/migrations')
export class MigrationsController {
  constructor(@Inject(ControlPlaneService) private readonly cp: ControlPlaneService) {}

  @Post()
  @RequireRole('operator')
  @ApiOperation({ summary: 'Live-migrate a running VM to another node' })
  @ApiBody({
    schema: {
      type: 'object',
      required: ['vmId', 'targetNodeId'],
      additionalProperties: false,
      properties: {
        vmId: { type: 'string' },
        targetNodeId: { type: 'string' },
        maxBandwidthBytesPerSec: {
          type: 'integer',
          minimum: 1,
          description: "caps QEMU's migration bandwidth",
        },
      },
    },
  })
  create(@Body(new ZodPipe(createMigrationSchema, 'body')) body: CreateMigrationRequest) {
    return this.cp.createMigration(body);
  }

  @Get()
  @RequireRole('viewer')
  @ApiOperation({ summary: 'List migrations, finished ones included' })
  @consistencyQuery
  async list(@Query(new ZodPipe(readQuerySchema, 'query')) q: ReadQuery) {
    return { items: await this.cp.listMigrations(q.consistency) };
  }

  @Get(':id')
  @RequireRole('viewer')
  @ApiOperation({ summary: 'Get a migration' })
  @consistencyQuery
  get(@Param('id') id: string, @Query(new ZodPipe(readQuerySchema, 'query')) q: ReadQuery) {
    return this.cp.getMigration(id, q.consistency);
  }

  @Post(':id/cancel')
  @HttpCode(200)
  @RequireRole('operator')
  @ApiOperation({ summary: 'Cancel a migration that has not begun switching over' })
  @ApiBody({
    required: false,
    schema: { type: 'object', additionalProperties: false, properties: { reason: { type: 'string' } } },
  })
  cancel(
    @Param('id') id: string,
    @Body(new ZodPipe(cancelMigrationSchema, 'body')) body: CancelMigrationRequest,
  ) {
    return this.cp.cancelMigration(id, body);
  }
}
