/**
 * One node's consensus runtime: opens (or bootstraps, or joins) its Raft member from the data
 * directory, serves the peer service, and exposes the Raft-backed ClusterStore plus the admission
 * of new members. `startAcp` is what `dwcp node start` calls before the API comes up.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { DomainError, type NodeCapacity } from '@novacron/cluster-state';
import { issueNodeCertificate, RaftNode } from '@novacron/native';
import type { Registry } from 'prom-client';
import { ClusterFiles, type Membership, sha256Hex } from './cluster-files';
import { acpMetrics } from './metrics';
import type { MembershipChange } from './peer-proto';
import { type PeerAddress, type PeerIdentity, PeerTransport } from './peer-transport';
import { errorToWire, outcomeToWire, RaftClusterStore } from './raft-cluster-store';
import { RaftReplica } from './raft-replica';
import { TickPolicy } from './tick-policy';
import { traced } from './tracing';

export interface AcpConfig {
  dataDir: string;
  /** The name in this node's certificate; also its name in the cluster. */
  nodeName: string;
  clusterName: string;
  peer: {
    host: string;
    port: number /** host:port others dial; defaults to host:port. */;
    advertise?: string;
  };
  apiUrl: string;
  capacity: NodeCapacity;
  /** Seed node's API URL and join token, for a node joining an existing cluster. */
  join?: { url: string; token: string };
  /** Fault injection (tests, demos): a one-way delay on every Raft message this node sends. */
  faults?: { peerDelayMs: number };
  raft: {
    electionTicks: number;
    heartbeatTicks: number;
    minTickMs: number;
    maxTickMs: number;
    snapshotEvery: number;
    requestTimeoutMs: number;
  };
}

export interface AdmitRequest {
  nodeName: string;
  peerAddr: string;
  apiUrl: string;
  capacity: NodeCapacity;
}

export interface AdmitResponse {
  clusterName: string;
  nodeId: string;
  raftId: number;
  caPem: string;
  certPem: string;
  keyPem: string;
  /** The current members, so the new node can answer the leader before it has the state. */
  members: PeerAddress[];
}

export interface AcpRuntime {
  store: RaftClusterStore;
  replica: RaftReplica;
  membership: Membership;
  peerPort: number;
  /** This node's PEM material: the cluster CA, its certificate and key (for mTLS between nodes). */
  identity: PeerIdentity;
  /** Serves another gRPC service on the peer port, under the same mutual TLS (e.g. incoming migrations). */
  addPeerService(service: grpc.ServiceDefinition, implementation: grpc.UntypedServiceImplementation): void;
  /** The p99 round trip of Raft messages to the slowest peer, in ms; undefined before any sample. */
  peerRttMs(): number | undefined;
  /** The lowest Raft round trip to one peer (by Raft id) in the recent window, ms. */
  minRttMsTo(raftId: number): number | undefined;
  /** Set when this start created a new cluster: where its admin and join tokens are. */
  created?: { adminTokenFile: string; joinTokenFile: string };
  /** Admits a new member (only on a node that holds the CA key). */
  admit(joinToken: string, req: AdmitRequest): Promise<AdmitResponse>;
  /** Hands leadership to another voter if this node leads, then stops. */
  close(): Promise<void>;
}

export const DEFAULT_RAFT = {
  electionTicks: 10,
  heartbeatTicks: 1,
  minTickMs: 50,
  maxTickMs: 2000,
  snapshotEvery: 1000,
  requestTimeoutMs: 5000,
} as const;

/** Asks a seed node to admit us: the seed issues our certificate and adds us as a voter. */
async function requestAdmission(cfg: AcpConfig, peerAddr: string): Promise<AdmitResponse> {
  if (!cfg.join) throw new Error('no join address');
  const res = await fetch(new URL('/v1/cluster/join', cfg.join.url), {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${cfg.join.token}` },
    body: JSON.stringify({
      nodeName: cfg.nodeName,
      peerAddr,
      apiUrl: cfg.apiUrl,
      capacity: cfg.capacity,
    } satisfies AdmitRequest),
    signal: AbortSignal.timeout(30_000),
  });
  const body = (await res.json()) as AdmitResponse & { code?: string; message?: string };
  if (!res.ok)
    throw new Error(
      `join refused by ${cfg.join.url}: ${res.status} ${body.code ?? ''} ${body.message ?? ''}`.trim(),
    );
  return body;
}

/** How a joining node reaches the seed; by default an HTTPS/HTTP POST to its /v1/cluster/join. */
export type AdmissionClient = (cfg: AcpConfig, peerAddr: string) => Promise<AdmitResponse>;

export async function startAcp(
  cfg: AcpConfig,
  registry: Registry,
  askAdmission: AdmissionClient = requestAdmission,
): Promise<AcpRuntime> {
  const files = new ClusterFiles(cfg.dataDir);
  const metrics = acpMetrics(registry);
  const advertise = cfg.peer.advertise ?? `${cfg.peer.host}:${cfg.peer.port}`;
  let created: AcpRuntime['created'];
  if (!files.exists()) {
    if (cfg.join) {
      const admitted = await askAdmission(cfg, advertise);
      files.adopt(
        {
          clusterName: admitted.clusterName,
          nodeId: admitted.nodeId,
          nodeName: cfg.nodeName,
          raftId: admitted.raftId,
          bootstrap: false,
          seeds: admitted.members,
        },
        { caPem: admitted.caPem, certPem: admitted.certPem, keyPem: admitted.keyPem },
      );
    } else {
      files.init(cfg.clusterName, cfg.nodeName);
      created = {
        adminTokenFile: join(files.dir, 'admin.token'),
        joinTokenFile: join(files.dir, 'join.token'),
      };
    }
  }
  const membership = files.membership();
  const identity = files.identity();
  const raftDir = join(cfg.dataDir, 'raft');
  mkdirSync(raftDir, { recursive: true });
  const node = RaftNode.open({
    id: membership.raftId,
    dataDir: raftDir,
    electionTick: cfg.raft.electionTicks,
    heartbeatTick: cfg.raft.heartbeatTicks,
    ...(membership.bootstrap ? { initialVoters: [membership.raftId] } : {}),
  });
  const ticks = new TickPolicy({
    minTickMs: cfg.raft.minTickMs,
    maxTickMs: cfg.raft.maxTickMs,
    rttMultiple: 2,
    window: 256,
  });

  // When each peer last answered a Raft batch: a leader refuses membership changes that would
  // leave too few reachable voters for a quorum. A leader sends every tick, so a live peer
  // answers within a few; one not heard from is waited for a little (a new leader has heard from
  // nobody yet).
  const lastHeard = new Map<number, number>();
  const recentMs = () => Math.max(1000, 4 * ticks.tickMs());
  const heard = (raftId: number) => Date.now() - (lastHeard.get(raftId) ?? 0) < recentMs();
  const reachable = async (raftIds: number[]): Promise<(raftId: number) => boolean> => {
    const deadline = Date.now() + 2 * recentMs();
    while (!raftIds.every(heard) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    return heard;
  };

  // Addresses come from the replicated node records; before we have them (mid-join), from the seed.
  let replica: RaftReplica | undefined;
  const addressOf = (raftId: number): PeerAddress | undefined => {
    const n = replica?.state.listNodes().find((r) => r.raftId === raftId && r.status !== 'removed');
    return n
      ? { raftId, nodeName: n.name, addr: n.peerAddr }
      : membership.seeds?.find((p) => p.raftId === raftId);
  };

  const transport = new PeerTransport(
    identity,
    {
      deliver: (_from, messages) => {
        replica?.step(messages);
      },
      propose: async (command) => {
        if (!replica) return errorToWire(new DomainError('ERR_UNAVAILABLE', 'starting'));
        try {
          return outcomeToWire(await replica.propose(JSON.parse(command.toString('utf8'))));
        } catch (e) {
          return errorToWire(e);
        }
      },
      changeMembership: async (c: MembershipChange) => {
        try {
          if (!replica) throw new DomainError('ERR_UNAVAILABLE', 'starting');
          await replica.changeMembership(
            c.kind === 'ADD_NODE' ? 'addNode' : 'removeNode',
            c.raftId,
            JSON.parse(c.context.toString('utf8') || '{}'),
          );
          return { errorCode: '', errorMessage: '' };
        } catch (e) {
          const w = errorToWire(e);
          return { errorCode: w.errorCode, errorMessage: w.errorMessage };
        }
      },
      nodeNameOf: (raftId) => addressOf(raftId)?.nodeName,
      isMemberName: (name) =>
        replica?.state.listNodes().some((n) => n.name === name && n.status !== 'removed') ?? false,
      isRemoved: (raftId) =>
        replica?.state.listNodes().some((n) => n.raftId === raftId && n.status === 'removed') ?? false,
    },
    (peer, ms) => {
      lastHeard.set(peer, Date.now());
      ticks.observe(peer, ms);
      metrics.peerRtt.observe({ peer: String(peer) }, ms / 1000);
    },
    cfg.faults?.peerDelayMs ?? 0,
  );
  const peerPort = await transport.listen(cfg.peer.host, cfg.peer.port);

  replica = new RaftReplica(
    node,
    {
      raftId: membership.raftId,
      snapshotEvery: cfg.raft.snapshotEvery,
      requestTimeoutMs: cfg.raft.requestTimeoutMs,
    },
    {
      send: (to, messages) => {
        const peer = addressOf(to);
        if (!peer) {
          replica?.reportUnreachable(to);
          return;
        }
        void transport
          .deliver(membership.raftId, peer, messages, Math.max(1000, ticks.tickMs() * 4))
          .then((delivery) => {
            if (delivery === 'lost') replica?.reportUnreachable(to);
            if (delivery === 'removed') replica?.learnRemoved();
          });
      },
      onMembership: (voters) => ticks.retain(voters),
      reachable,
      onHalt: (reason) =>
        process.stderr.write(
          `${JSON.stringify({ level: 'fatal', component: 'acp', msg: 'raft engine halted; restart the node', reason })}\n`,
        ),
    },
    metrics,
    ticks,
  );
  replica.start();

  const store = new RaftClusterStore(replica, transport, addressOf, metrics, {
    nodeId: membership.nodeId,
    leaderWaitMs: Math.max(5000, cfg.raft.requestTimeoutMs),
    requestTimeoutMs: cfg.raft.requestTimeoutMs,
  });

  if (membership.bootstrap) void registerBootstrapNode(cfg, files, membership, store, advertise);

  const ca = files.ca();
  const joinSha = files.joinTokenSha256();
  let admitting: Promise<unknown> = Promise.resolve();
  const admit = (token: string, req: AdmitRequest): Promise<AdmitResponse> => {
    const run = async (): Promise<AdmitResponse> => {
      if (!ca || !joinSha)
        throw new DomainError(
          'ERR_PERMISSION_DENIED',
          `node ${membership.nodeName} does not hold the cluster CA; join through the node that ran cluster init`,
        );
      if (sha256Hex(token) !== joinSha) throw new DomainError('ERR_UNAUTHENTICATED', 'invalid join token');
      const nodes = await store.read((s) => s.listNodes());
      if (nodes.some((n) => n.name === req.nodeName && n.status !== 'removed')) {
        throw new DomainError('ERR_CONFLICT', `a node named ${req.nodeName} is already a member`, 'nodeName');
      }
      const raftId = Math.max(0, ...nodes.map((n) => n.raftId)) + 1;
      const nodeId = `node-${raftId}`;
      await store.execute({
        type: 'node.register',
        nodeId,
        raftId,
        name: req.nodeName,
        apiUrl: req.apiUrl,
        peerAddr: req.peerAddr,
        capacity: req.capacity,
        labels: {},
        at: new Date().toISOString(),
      });
      const host = req.peerAddr.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
      const cert = issueNodeCertificate(ca, { nodeName: req.nodeName, extraNames: [host] });
      await store.changeMembership('addNode', raftId, { nodeId });
      const members = nodes
        .filter((n) => n.status !== 'removed')
        .map((n) => ({ raftId: n.raftId, nodeName: n.name, addr: n.peerAddr }));
      return {
        members,
        clusterName: membership.clusterName,
        nodeId,
        raftId,
        caPem: ca.certPem,
        certPem: cert.certPem,
        keyPem: cert.keyPem,
      };
    };
    // One admission at a time: each picks the next Raft id from the state the previous one wrote.
    const traceRun = () => traced('acp.admit', { 'dwcp.node_name': req.nodeName }, run);
    const next = admitting.then(traceRun, traceRun);
    admitting = next.catch(() => undefined);
    return next;
  };

  return {
    store,
    replica,
    membership,
    peerPort,
    identity,
    addPeerService: (service, implementation) => transport.addService(service, implementation),
    peerRttMs: () => ticks.p99RttMs(),
    minRttMsTo: (raftId) => ticks.minRttMs(raftId),
    ...(created ? { created } : {}),
    admit,
    close: async () => {
      const r = replica;
      if (r?.isLeader) {
        const other = r.status().voters.find((v) => v !== r.raftId);
        if (other !== undefined) {
          r.transferLeader(other);
          await new Promise((res) => setTimeout(res, Math.min(2000, ticks.tickMs() * 4)));
        }
      }
      r?.close();
      await transport.close();
    },
  };
}

/** The first node registers itself and the admin token once it leads its one-node cluster. */
async function registerBootstrapNode(
  cfg: AcpConfig,
  files: ClusterFiles,
  m: Membership,
  store: RaftClusterStore,
  advertise: string,
): Promise<void> {
  for (let attempt = 0; attempt < 50; attempt++) {
    try {
      const self = await store.read((s) => s.getNode(m.nodeId));
      if (!self) {
        await store.execute({
          type: 'node.register',
          nodeId: m.nodeId,
          raftId: m.raftId,
          name: m.nodeName,
          apiUrl: cfg.apiUrl,
          peerAddr: advertise,
          capacity: cfg.capacity,
          labels: {},
          at: new Date().toISOString(),
        });
      }
      const admin = files.adminToken();
      if (admin) {
        const sha = sha256Hex(admin);
        const known = await store.read((s) => s.findTokenBySha256(sha));
        if (!known) {
          await store.execute({
            type: 'token.add',
            tokenId: 'tok-admin',
            name: 'admin',
            role: 'admin',
            sha256: sha,
            at: new Date().toISOString(),
          });
        }
      }
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}
