/** REST: /v1/vms, as vms.contract.ts declares it (the console is in vm-console.controller.ts). */
import { Body, Controller, Inject, Param, Query } from '@nestjs/common';
import { Operation } from './contract';
import { ControlPlaneService } from './control-plane.service';
import type { CreateVmRequest, IdParams, ReadQuery, UpdateLabelsRequest } from './schemas';
import { vmOperations as ops } from './vms.contract';
import { ZodPipe } from './zod-pipe';

@Controller()
export class VmsController {
  constructor(@Inject(ControlPlaneService) private readonly cp: ControlPlaneService) {}

  @Operation(ops.create)
  create(@Body(new ZodPipe(ops.create.body, 'body')) body: CreateVmRequest) {
    return this.cp.createVm(body);
  }

  @Operation(ops.list)
  async list(@Query(new ZodPipe(ops.list.query, 'query')) q: ReadQuery) {
    return { items: await this.cp.listVms(q.consistency) };
  }

  @Operation(ops.get)
  get(
    @Param(new ZodPipe(ops.get.params, 'path')) p: IdParams,
    @Query(new ZodPipe(ops.get.query, 'query')) q: ReadQuery,
  ) {
    return this.cp.getVm(p.id, q.consistency);
  }

  @Operation(ops.start)
  start(@Param(new ZodPipe(ops.start.params, 'path')) p: IdParams) {
    return this.cp.startVm(p.id);
  }

  @Operation(ops.stop)
  stop(@Param(new ZodPipe(ops.stop.params, 'path')) p: IdParams) {
    return this.cp.stopVm(p.id);
  }

  @Operation(ops.remove)
  remove(@Param(new ZodPipe(ops.remove.params, 'path')) p: IdParams) {
    return this.cp.deleteVm(p.id);
  }

  @Operation(ops.labels)
  labels(
    @Param(new ZodPipe(ops.labels.params, 'path')) p: IdParams,
    @Body(new ZodPipe(ops.labels.body, 'body')) body: UpdateLabelsRequest,
  ) {
    return this.cp.updateVmLabels(p.id, body);
  }
}
