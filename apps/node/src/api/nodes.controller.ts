/** REST: /v1/nodes, as nodes.contract.ts declares it. */
import { Controller, Inject, Optional, Param, Query } from '@nestjs/common';
import { PATH_ESTIMATOR, type PathEstimator } from '@novacron/bandwidth';
import { LOCAL_NODE, type LocalNode } from '@novacron/cluster-state';
import { Operation } from './contract';
import { ControlPlaneService } from './control-plane.service';
import { nodeOperations as ops } from './nodes.contract';
import type { IdParams, ReadQuery } from './schemas';
import { ZodPipe } from './zod-pipe';

@Controller()
export class NodesController {
  constructor(
    @Inject(ControlPlaneService) private readonly cp: ControlPlaneService,
    @Inject(LOCAL_NODE) private readonly self: LocalNode,
    @Optional() @Inject(PATH_ESTIMATOR) private readonly pba?: PathEstimator,
  ) {}

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

  @Operation(ops.path)
  async path(@Param(new ZodPipe(ops.path.params, 'path')) p: IdParams) {
    const node = await this.cp.getNode(p.id, 'local');
    const e = this.pba?.estimate(node.id, node.raftId);
    const rounded = (key: string, x: number | undefined) => (x === undefined ? {} : { [key]: Math.round(x) });
    const measured = e?.measured;
    return {
      nodeId: node.id,
      fromNodeId: this.self.nodeId,
      samples: e?.samples ?? 0,
      ...(e?.rttMs === undefined ? {} : { rttMs: e.rttMs }),
      ...rounded('predictedBytesPerSec', e?.bandwidthBytesPerSec),
      ...rounded('lowerBytesPerSec', e?.lowerBandwidthBytesPerSec),
      ...(measured === undefined
        ? {}
        : {
            measured: {
              ...(({ atMs: _, ...rest }) => rest)(measured),
              at: new Date(measured.atMs).toISOString(),
            },
          }),
    };
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
