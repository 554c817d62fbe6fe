/** The global REST guard: every route needs a token of its declared role unless it is marked public. */
import { type CanActivate, type ExecutionContext, Inject, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { ApiTokenRecord, Role } from '@novacron/cluster-state';
import type { FastifyRequest } from 'fastify';
import { Authenticator } from './authenticator';
import { PUBLIC_ROUTE, REQUIRED_ROLE } from './roles';

export type AuthenticatedRequest = FastifyRequest & { caller?: ApiTokenRecord };

@Injectable()
export class AuthGuard implements CanActivate {
  constructor(
    @Inject(Reflector) private readonly reflector: Reflector,
    @Inject(Authenticator) private readonly authenticator: Authenticator,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const targets = [context.getHandler(), context.getClass()];
    if (this.reflector.getAllAndOverride<boolean>(PUBLIC_ROUTE, targets)) return true;
    // A route that forgot to declare its role is admin-only rather than open.
    const required = this.reflector.getAllAndOverride<Role>(REQUIRED_ROLE, targets) ?? 'admin';
    const request = context.switchToHttp().getRequest<AuthenticatedRequest>();
    const caller = await this.authenticator.authenticate(request.headers.authorization);
    this.authorizeAndRemember(request, caller, required);
    return true;
  }

  private authorizeAndRemember(request: AuthenticatedRequest, caller: ApiTokenRecord, required: Role): void {
    this.authenticator.authorize(caller, required);
    request.caller = caller;
  }
}
