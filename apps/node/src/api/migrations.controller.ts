/** REST: /v1/migrations, as migrations.contract.ts declares it. */
import { Body, Controller, Inject, Param, Query } from '@nestjs/common';
import { Operation } from './contract';
import { ControlPlaneService } from './control-plane.service';
import { migrationOperations as ops } from './migrations.contract';
import type { CancelMigrationRequest, CreateMigrationRequest, IdParams, ReadQuery } from './schemas';
import { ZodPipe } from './zod-pipe';

@Controller()
export class MigrationsController {
  constructor(@Inject(ControlPlaneService) private readonly cp: ControlPlaneService) {}

  @Operation(ops.create)
  create(@Body(new ZodPipe(ops.create.body, 'body')) body: CreateMigrationRequest) {
    return this.cp.createMigration(body);
  }

  @Operation(ops.list)
  async list(@Query(new ZodPipe(ops.list.query, 'query')) q: ReadQuery) {
    return { items: await this.cp.listMigrations(q.consistency) };
  }

  @Operation(ops.get)
  get(
    @Param(new ZodPipe(ops.get.params, 'path')) p: IdParams,
    @Query(new ZodPipe(ops.get.query, 'query')) q: ReadQuery,
  ) {
    return this.cp.getMigration(p.id, q.consistency);
  }

  @Operation(ops.cancel)
  cancel(
    @Param(new ZodPipe(ops.cancel.params, 'path')) p: IdParams,
    @Body(new ZodPipe(ops.cancel.body, 'body')) body: CancelMigrationRequest,
  ) {
    return this.cp.cancelMigration(p.id, body);
  }
}
