/** Liveness (the process serves requests) and readiness (this node knows a Raft leader). Public. */
import { Controller, Get, Inject } from '@nestjs/common';
import { HealthCheck, HealthCheckService, HealthIndicatorService } from '@nestjs/terminus';
import type { ClusterStore } from '@novacron/cluster-state';
import { Public } from '../auth/roles';
import { CLUSTER_STORE } from '../tokens';

@Public()
@Controller('health')
export class HealthController {
  constructor(
    @Inject(HealthCheckService) private readonly health: HealthCheckService,
    @Inject(HealthIndicatorService) private readonly indicators: HealthIndicatorService,
    @Inject(CLUSTER_STORE) private readonly store: ClusterStore,
  ) {}

  @Get('live')
  @HealthCheck()
  live() {
    return this.health.check([]);
  }

  @Get('ready')
  @HealthCheck()
  ready() {
    return this.health.check([
      () => {
        const indicator = this.indicators.check('raft');
        const { leaderRaftId, role, term } = this.store.status();
        return leaderRaftId === null
          ? indicator.down({ role, term, leader: null })
          : indicator.up({ role, term, leader: leaderRaftId });
      },
    ]);
  }
}
