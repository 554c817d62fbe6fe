/** REST: /v1/cluster (membership and leadership) and /v1/tokens (API tokens), as their contracts declare them. */
import { Body, Controller, Inject, Param, Query } from '@nestjs/common';
import { DomainError } from '@novacron/cluster-state';
import { ADMISSION } from '../tokens';
import type { ClusterAdmission } from './admission';
import { clusterOperations } from './cluster.contract';
import { JoinToken, Operation } from './contract';
import { ControlPlaneService } from './control-plane.service';
import type { CreateTokenRequest, IdParams, JoinRequest, ReadQuery } from './schemas';
import { tokenOperations } from './tokens.contract';
import { ZodPipe } from './zod-pipe';

@Controller()
export class ClusterController {
  constructor(
    @Inject(ControlPlaneService) private readonly cp: ControlPlaneService,
    @Inject(ADMISSION) private readonly admission: ClusterAdmission | null,
  ) {}

  @Operation(clusterOperations.status)
  status() {
    return this.cp.status();
  }

  @Operation(clusterOperations.members)
  async members(@Query(new ZodPipe(clusterOperations.members.query, 'query')) q: ReadQuery) {
    return { items: await this.cp.members(q.consistency) };
  }

  @Operation(clusterOperations.leader)
  leader(@Query(new ZodPipe(clusterOperations.leader.query, 'query')) q: ReadQuery) {
    return this.cp.leader(q.consistency);
  }

  /** Authenticated by the cluster's join token, not by an API token: admission checks it. */
  @Operation(clusterOperations.join)
  async join(
    @JoinToken() token: string,
    @Body(new ZodPipe(clusterOperations.join.body, 'body')) body: JoinRequest,
  ) {
    if (this.admission === null) {
      throw new DomainError(
        'ERR_PERMISSION_DENIED',
        'this node does not admit members; join through the first node',
      );
    }
    return this.admission(token, body);
  }
}

@Controller()
export class TokensController {
  constructor(@Inject(ControlPlaneService) private readonly cp: ControlPlaneService) {}

  @Operation(tokenOperations.create)
  async create(@Body(new ZodPipe(tokenOperations.create.body, 'body')) body: CreateTokenRequest) {
    const { token, record } = await this.cp.createToken(body);
    return { ...record, token };
  }

  @Operation(tokenOperations.list)
  async list(@Query(new ZodPipe(tokenOperations.list.query, 'query')) q: ReadQuery) {
    return { items: await this.cp.listTokens(q.consistency) };
  }

  @Operation(tokenOperations.revoke)
  revoke(@Param(new ZodPipe(tokenOperations.revoke.params, 'path')) p: IdParams) {
    return this.cp.revokeToken(p.id);
  }
}
