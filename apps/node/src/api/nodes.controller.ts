/** REST: /v1/nodes, as nodes.contract.ts declares it. */
import { Controller, Inject, Param, Query } from '@nestjs/common';
import { Operation } from './contract';
import { ControlPlaneService } from './control-plane.service';
import { nodeOperations as ops } from './nodes.contract';
import type { IdParams, ReadQuery } from './schemas';
import { ZodPipe } from './zod-pipe';

@Controller()
export class NodesController {
  constructor(@Inject(ControlPlaneService) private readonly cp: ControlPlaneService) {}

  @Operation(ops.list)
  async list(@Query(new ZodPipe(ops.list.query, 'query')) q: ReadQuery) {
    return { items: await this.cp.listNodes(q.consistency) };
  }

  @Operation(ops.get)
  get(
    @Param(new ZodPipe(ops.get.params, 'path')) p: IdParams,
    @Query(new ZodPipe(ops.get.query, 'query')) q: ReadQuery,
  ) {
    return this.cp.getNode(p.id, q.consistency);
  }

  @Operation(ops.drain)
  drain(@Param(new ZodPipe(ops.drain.params, 'path')) p: IdParams) {
    return this.cp.drainNode(p.id);
  }

  @Operation(ops.remove)
  remove(@Param(new ZodPipe(ops.remove.params, 'path')) p: IdParams) {
    return this.cp.removeNode(p.id);
  }
}
