/** The node daemon's root module: one per process role, assembled from small modules. */
import { type DynamicModule, Module } from '@nestjs/common';
import { ApiModule } from './api/api.module';
import { AuthModule } from './auth/auth.module';
import { GrpcApiModule } from './grpc/grpc-api.module';
import { HealthModule } from './health/health.module';
import { MetricsModule } from './metrics/metrics.module';
import { type NodeContext, NodeContextModule } from './node-context.module';

@Module({})
// biome-ignore lint/complexity/noStaticOnlyClass: a Nest dynamic module is a class with a static forRoot.
export class NodeAppModule {
  static forRoot(ctx: NodeContext): DynamicModule {
    return {
      module: NodeAppModule,
      imports: [
        NodeContextModule.forRoot(ctx),
        AuthModule,
        HealthModule,
        MetricsModule,
        ApiModule,
        GrpcApiModule,
      ],
    };
  }
}
