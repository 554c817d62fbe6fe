/** The gRPC API server; startNode binds it after the REST listener is up. */
import { Module } from '@nestjs/common';
import { ApiModule } from '../api/api.module';
import { AuthModule } from '../auth/auth.module';
import { GrpcApiServer } from './grpc-api.server';

@Module({ imports: [ApiModule, AuthModule], providers: [GrpcApiServer], exports: [GrpcApiServer] })
export class GrpcApiModule {}
