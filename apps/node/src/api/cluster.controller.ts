/** REST: /v1/cluster (membership and leadership) and /v1/tokens (API tokens). */
import { Body, Controller, Delete, Get, Headers, Inject, Param, Post, Query } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiQuery, ApiTags } from '@nestjs/swagger';
import { DomainError } from '@novacron/cluster-state';
import { Public, RequireRole } from '../auth/roles';
import { ADMISSION } from '../tokens';
import type { ClusterAdmission } from './admission';
import { ControlPlaneService } from './control-plane.service';
import {
  type CreateTokenRequest,
  createTokenSchema,
  type JoinRequest,
  joinRequestSchema,
  type ReadQuery,
  readQuerySchema,
} from './schemas';
import { ZodPipe } from './zod-pipe';

const consistencyQuery = ApiQuery({ name: 'consistency', required: false, enum: ['linearizable', 'local'] });

@ApiTags('cluster')
@ApiBearerAuth()
@Controller('v1/cluster')
export class ClusterController {
  constructor(
    @Inject(ControlPlaneService) private readonly cp: ControlPlaneService,
    @Inject(ADMISSION) private readonly admission: ClusterAdmission | null,
  ) {}

  @Get('status')
  @RequireRole('viewer')
  @ApiOperation({ summary: "This node's view of the Raft group" })
  status() {
    return this.cp.status();
  }

  @Get('members')
  @RequireRole('viewer')
  @ApiOperation({ summary: 'Voters and learners, with their node records' })
  @consistencyQuery
  async members(@Query(new ZodPipe(readQuerySchema, 'query')) q: ReadQuery) {
    return { items: await this.cp.members(q.consistency) };
  }

  @Get('leader')
  @RequireRole('viewer')
  @ApiOperation({ summary: 'The current leader (503 while there is none)' })
  @consistencyQuery
  leader(@Query(new ZodPipe(readQuerySchema, 'query')) q: ReadQuery) {
    return this.cp.leader(q.consistency);
  }

  /** Authenticated by the cluster's join token (Authorization: Bearer), not by an API token. */
  @Post('join')
  @Public()
  @ApiOperation({ summary: 'Admit a new node (bearer = the join token); answers with its identity' })
  async join(
    @Headers('authorization') authorization: string | undefined,
    @Body(new ZodPipe(joinRequestSchema, 'body')) body: JoinRequest,
  ) {
    const token = /^Bearer[ \t]+(\S+)\s*$/i.exec(authorization ?? '')?.[1];
    if (token === undefined)
      throw new DomainError('ERR_UNAUTHENTICATED', 'missing join token (Authorization: Bearer)');
    if (this.admission === null) {
      throw new DomainError(
        'ERR_PERMISSION_DENIED',
        'this node does not admit members; join through the first node',
      );
    }
    return this.admission(token, body);
  }
}

@ApiTags('tokens')
@ApiBearerAuth()
@Controller('v1/tokens')
export class TokensController {
  constructor(@Inject(ControlPlaneService) private readonly cp: ControlPlaneService) {}

  @Post()
  @RequireRole('admin')
  @ApiOperation({ summary: 'Create an API token; the token is in this response only' })
  async create(@Body(new ZodPipe(createTokenSchema, 'body')) body: CreateTokenRequest) {
    const { token, record } = await this.cp.createToken(body);
    return { ...record, token };
  }

  @Get()
  @RequireRole('admin')
  @ApiOperation({ summary: 'List API tokens (their hashes, never the tokens)' })
  async list(@Query(new ZodPipe(readQuerySchema, 'query')) q: ReadQuery) {
    return { items: await this.cp.listTokens(q.consistency) };
  }

  @Delete(':id')
  @RequireRole('admin')
  @ApiOperation({ summary: 'Revoke an API token' })
  revoke(@Param('id') id: string) {
    return this.cp.revokeToken(id);
  }
}
