/** The public REST API under /v1, with its global error filter. */
import { Module } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { ApiExceptionFilter } from './api-exception.filter';
import { ClusterController, TokensController } from './cluster.controller';
import { ControlPlaneService } from './control-plane.service';
import { MigrationsController } from './migrations.controller';
import { NodesController } from './nodes.controller';
import { VmConsoleController } from './vm-console.controller';
import { VmsController } from './vms.controller';

@Module({
  controllers: [
    NodesController,
    VmsController,
    VmConsoleController,
    MigrationsController,
    ClusterController,
    TokensController,
  ],
  providers: [ControlPlaneService, { provide: APP_FILTER, useClass: ApiExceptionFilter }],
  exports: [ControlPlaneService],
})
export class ApiModule {}
