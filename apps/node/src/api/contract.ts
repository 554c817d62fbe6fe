/**
 * The REST contract: every operation as data (method, path, access, request and response schemas, the
 * errors it can answer), one table per resource in *.contract.ts. Controllers take their route, role
 * and validation schemas from it and openapi-document.ts generates the OpenAPI document from it, so
 * what is documented is what is enforced.
 */
import {
  applyDecorators,
  type CanActivate,
  createParamDecorator,
  type ExecutionContext,
  HttpCode,
  Injectable,
  RequestMapping,
  RequestMethod,
  SetMetadata,
  UseGuards,
} from '@nestjs/common';
import { DomainError, type Role } from '@novacron/cluster-state';
import type { FastifyRequest } from 'fastify';
import type { AnyZodObject, ZodTypeAny } from 'zod';
import { Public, RequireRole } from '../auth/roles';

/**
 * Who may call: a token of at least this role, nobody in particular, or the holder of the cluster's
 * join token (POST /v1/cluster/join checks it itself).
 */
export type Access = Role | 'public' | 'join-token';

export type HttpMethod = 'get' | 'post' | 'patch' | 'delete';

/** The statuses whose meaning depends on the operation; the others follow from its shape (see errorStatuses). */
export type DomainErrorStatus = 404 | 409 | 503 | 504;

export interface ApiOperation {
  method: HttpMethod;
  /** OpenAPI syntax: `/v1/vms/{id}`. */
  path: string;
  tag: string;
  summary: string;
  access: Access;
  params?: AnyZodObject;
  query?: AnyZodObject;
  /** Absent: the operation reads no body (whatever is sent is ignored). */
  body?: ZodTypeAny;
  success: {
    status: 200 | 201;
    description: string;
    schema: ZodTypeAny;
    /** Defaults to application/json. */
    contentType?: string;
  };
  /** When each domain error happens, in words for the document. */
  errors: Partial<Record<DomainErrorStatus, string>>;
}

/** fastify parses a body for these, so any of them can meet a malformed, oversized or foreign one. */
export const BODY_METHODS: ReadonlySet<HttpMethod> = new Set(['post', 'patch', 'delete']);

const ROLE_ORDER: readonly Role[] = ['viewer', 'operator', 'admin'];

/** Every status the operation can answer besides its success, with what it means there. */
export function errorStatuses(op: ApiOperation): Map<number, string> {
  const out = new Map<number, string>();
  if (op.params || op.query || op.body || BODY_METHODS.has(op.method)) {
    out.set(
      400,
      'The request is invalid: a field fails validation (`fields` names each) or the JSON does not parse.',
    );
  }
  if (op.access === 'join-token') {
    out.set(401, "No join token, or not the cluster's.");
    out.set(403, 'This node does not admit members (join through the node that ran `cluster init`).');
  } else if (op.access !== 'public') {
    out.set(401, 'No bearer token, a malformed one, or one that is unknown or revoked.');
    if (ROLE_ORDER.indexOf(op.access) > 0) out.set(403, `The token's role is below ${op.access}.`);
  }
  if (op.errors[404]) out.set(404, op.errors[404]);
  if (op.errors[409]) out.set(409, op.errors[409]);
  if (BODY_METHODS.has(op.method)) {
    out.set(413, 'The body is larger than 1 MiB.');
    out.set(415, 'The body has a media type the node does not parse; send application/json.');
  }
  out.set(500, 'A fault of the node (logged); never a client mistake.');
  out.set(503, ['This node is shutting down.', op.errors[503]].filter(Boolean).join(' '));
  if (op.errors[504]) out.set(504, op.errors[504]);
  return out;
}

/** The metadata key under which a handler records the operation it implements (read by the contract spec). */
export const API_OPERATION = 'dwcp:api-operation';

const NEST_METHOD: Record<HttpMethod, RequestMethod> = {
  get: RequestMethod.GET,
  post: RequestMethod.POST,
  patch: RequestMethod.PATCH,
  delete: RequestMethod.DELETE,
};

/** `/v1/vms/{id}` in the router's syntax: `/v1/vms/:id`. */
export const routerPath = (path: string): string => path.replace(/\{(\w+)\}/g, ':$1');

/** The bearer token of an `Authorization` header, or undefined. */
export function bearerToken(header: string | undefined): string | undefined {
  return /^Bearer[ \t]+(\S+)\s*$/i.exec(header ?? '')?.[1];
}

/** Guards run before pipes: a join without a token is 401 whatever its body. */
@Injectable()
export class JoinTokenPresent implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const request = context.switchToHttp().getRequest<FastifyRequest>();
    if (bearerToken(request.headers.authorization) === undefined) {
      throw new DomainError('ERR_UNAUTHENTICATED', 'missing join token (Authorization: Bearer)');
    }
    return true;
  }
}

/** The join token of a request JoinTokenPresent let through. */
export const JoinToken = createParamDecorator(
  (_data: unknown, context: ExecutionContext): string =>
    bearerToken(context.switchToHttp().getRequest<FastifyRequest>().headers.authorization) ?? '',
);

/** Routes a handler as the contract says: method, path, success status and access. */
export function Operation(op: ApiOperation): MethodDecorator {
  const access =
    op.access === 'public'
      ? [Public()]
      : op.access === 'join-token'
        ? [Public(), UseGuards(JoinTokenPresent)]
        : [RequireRole(op.access)];
  return applyDecorators(
    RequestMapping({ path: routerPath(op.path), method: NEST_METHOD[op.method] }),
    HttpCode(op.success.status),
    SetMetadata(API_OPERATION, op),
    ...access,
  );
}
