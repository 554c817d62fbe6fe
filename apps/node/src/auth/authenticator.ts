/**
 * Bearer-token authentication shared by REST and gRPC. A token is an opaque string (ours look like
 * `dwcp_<kind>_<43 base64url chars>`, but any printable string works): the cluster stores only the
 * lower-case hex SHA-256 of its UTF-8 bytes, and a caller is whoever holds a token whose hash is known.
 */
import { createHash } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import {
  type ApiTokenRecord,
  type ClusterStore,
  DomainError,
  type Role,
  roleAtLeast,
} from '@novacron/cluster-state';
import { CLUSTER_STORE } from '../tokens';

export const sha256Hex = (s: string): string => createHash('sha256').update(s, 'utf8').digest('hex');

const BEARER = /^Bearer[ \t]+([\x21-\x7e]{1,512})[ \t]*$/i;

@Injectable()
export class Authenticator {
  constructor(@Inject(CLUSTER_STORE) private readonly store: ClusterStore) {}

  /**
   * Resolves the caller of an `Authorization` header value. Tokens are looked up in local state:
   * a token added a moment ago on another node may take a heartbeat to be known here.
   */
  async authenticate(header: string | undefined): Promise<ApiTokenRecord> {
    if (header === undefined || header === '') {
      throw new DomainError('ERR_UNAUTHENTICATED', 'missing bearer token (Authorization: Bearer <token>)');
    }
    const token = BEARER.exec(header)?.[1];
    if (token === undefined) {
      throw new DomainError(
        'ERR_UNAUTHENTICATED',
        'malformed Authorization header; expected "Bearer <token>"',
      );
    }
    const hash = sha256Hex(token);
    const record = await this.store.read((s) => s.findTokenBySha256(hash), 'local');
    if (record === undefined) throw new DomainError('ERR_UNAUTHENTICATED', 'invalid or revoked token');
    return record;
  }

  authorize(caller: ApiTokenRecord, required: Role): void {
    if (!roleAtLeast(caller.role, required)) {
      throw new DomainError(
        'ERR_PERMISSION_DENIED',
        `this needs the ${required} role; token ${caller.name} has ${caller.role}`,
      );
    }
  }
}
