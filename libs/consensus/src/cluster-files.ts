/**
 * The files that make a data directory a cluster member: the cluster CA, this node's
 * certificate and key, its Raft id, and (on the node that ran `cluster init`) the CA key and
 * the join token. Secrets are written 0600, atomically (tmp + fsync + rename).
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  writeSync,
} from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { generateClusterCa, issueNodeCertificate } from '@novacron/native';
import type { PeerAddress, PeerIdentity } from './peer-transport';

export interface Membership {
  clusterName: string;
  nodeId: string;
  nodeName: string;
  raftId: number;
  /** True on the node that created the cluster: it bootstraps Raft with itself as sole voter. */
  bootstrap: boolean;
  /** Members known when this node was admitted: how it reaches them before it has the replicated state. */
  seeds?: PeerAddress[];
}

/** This host's name, made a valid node name (the name in its certificate). */
export function defaultNodeName(): string {
  const name = hostname()
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 63);
  return name || 'node';
}

export const sha256Hex = (s: string): string => createHash('sha256').update(s).digest('hex');

/** A bearer secret: 32 random bytes, base64url, with a prefix that says what it is. */
export const newSecret = (kind: 'admin' | 'join' | 'api'): string =>
  `dwcp_${kind}_${randomBytes(32).toString('base64url')}`;

function writeAtomic(path: string, data: string, mode = 0o600): void {
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, 'w', mode);
  try {
    writeSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

export class ClusterFiles {
  readonly dir: string;

  constructor(dataDir: string) {
    this.dir = join(dataDir, 'cluster');
  }

  private path(name: string): string {
    return join(this.dir, name);
  }

  exists(): boolean {
    return existsSync(this.path('member.json'));
  }

  membership(): Membership {
    return JSON.parse(readFileSync(this.path('member.json'), 'utf8')) as Membership;
  }

  identity(): PeerIdentity {
    const r = (f: string) => readFileSync(this.path(f), 'utf8');
    return { caPem: r('ca.pem'), certPem: r('node.pem'), keyPem: r('node.key') };
  }

  /** The CA (with its key) if this node holds it, which lets it admit new members. */
  ca(): { certPem: string; keyPem: string } | undefined {
    if (!existsSync(this.path('ca.key'))) return undefined;
    return {
      certPem: readFileSync(this.path('ca.pem'), 'utf8'),
      keyPem: readFileSync(this.path('ca.key'), 'utf8'),
    };
  }

  joinTokenSha256(): string | undefined {
    return existsSync(this.path('join.token'))
      ? sha256Hex(readFileSync(this.path('join.token'), 'utf8').trim())
      : undefined;
  }

  /** `cluster init`: a new CA, this node as Raft id 1, an admin token and a join token. */
  init(clusterName: string, nodeName: string): { adminToken: string; joinToken: string } {
    if (this.exists()) throw new Error(`${this.dir} already belongs to a cluster`);
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const ca = generateClusterCa(clusterName);
    const cert = issueNodeCertificate(ca, { nodeName, extraNames: ['localhost', '127.0.0.1'] });
    const adminToken = newSecret('admin');
    const joinToken = newSecret('join');
    writeAtomic(this.path('ca.pem'), ca.certPem, 0o644);
    writeAtomic(this.path('ca.key'), ca.keyPem);
    writeAtomic(this.path('node.pem'), cert.certPem, 0o644);
    writeAtomic(this.path('node.key'), cert.keyPem);
    writeAtomic(this.path('join.token'), `${joinToken}\n`);
    writeAtomic(this.path('admin.token'), `${adminToken}\n`);
    this.writeMembership({ clusterName, nodeId: 'node-1', nodeName, raftId: 1, bootstrap: true });
    return { adminToken, joinToken };
  }

  /** The admin token made by `init`, for the bootstrap node to register in the replicated state. */
  adminToken(): string | undefined {
    return existsSync(this.path('admin.token'))
      ? readFileSync(this.path('admin.token'), 'utf8').trim()
      : undefined;
  }

  /** A joining node stores what the cluster gave it. */
  adopt(m: Membership, identity: PeerIdentity): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    writeAtomic(this.path('ca.pem'), identity.caPem, 0o644);
    writeAtomic(this.path('node.pem'), identity.certPem, 0o644);
    writeAtomic(this.path('node.key'), identity.keyPem);
    this.writeMembership(m);
  }

  private writeMembership(m: Membership): void {
    writeAtomic(this.path('member.json'), `${JSON.stringify(m, null, 2)}\n`, 0o644);
  }
}
