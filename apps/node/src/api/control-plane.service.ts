/**
 * What the public API can do, shared by the REST controllers and the gRPC handlers so both
 * speak the same semantics: builds commands, executes them through the ClusterStore and reads state.
 */
import { Inject, Injectable } from '@nestjs/common';
import {
  type ApiTokenRecord,
  type ClusterStateView,
  type ClusterStatus,
  type ClusterStore,
  DEFAULT_MIGRATION_POLICY,
  DomainError,
  fields,
  type MigrationRecord,
  type NodeRecord,
  type ReadConsistency,
  type VmRecord,
} from '@novacron/cluster-state';
import { sha256Hex } from '../auth/authenticator';
import { CLUSTER_STORE, PROPOSAL_SOURCE } from '../tokens';
import type { ProposalSource } from './proposal-source';
import type {
  CancelMigrationRequest,
  CreateMigrationRequest,
  CreateTokenRequest,
  CreateVmRequest,
  UpdateLabelsRequest,
} from './schemas';

export interface ClusterMember {
  raftId: number;
  nodeId: string | null;
  name: string | null;
  role: 'voter' | 'learner';
  isLeader: boolean;
  apiUrl: string | null;
  peerAddr: string | null;
  status: NodeRecord['status'] | null;
}

/** An id that does not have the shape of one cannot name anything: that is a 404, not a 400. */
function requireShape(
  schema: { safeParse(v: unknown): { success: boolean } },
  what: string,
  id: string,
): void {
  if (!schema.safeParse(id).success) throw new DomainError('ERR_NOT_FOUND', `${what} ${id} not found`);
}

function found<T>(record: T | undefined, what: string, id: string): T {
  if (record === undefined) throw new DomainError('ERR_NOT_FOUND', `${what} ${id} not found`);
  return record;
}

@Injectable()
export class ControlPlaneService {
  constructor(
    @Inject(CLUSTER_STORE) private readonly store: ClusterStore,
    @Inject(PROPOSAL_SOURCE) private readonly proposals: ProposalSource,
  ) {}

  private read<T>(query: (s: ClusterStateView) => T, consistency: ReadConsistency): Promise<T> {
    return this.store.read(query, consistency);
  }

  // --- nodes ---

  listNodes(consistency: ReadConsistency): Promise<NodeRecord[]> {
    return this.read((s) => s.listNodes(), consistency);
  }

  /** A removed node is gone for this API (the list still shows it, as `removed`). */
  async getNode(id: string, consistency: ReadConsistency): Promise<NodeRecord> {
    const node = found(await this.read((s) => s.getNode(id), consistency), 'node', id);
    if (node.status === 'removed')
      throw new DomainError('ERR_NOT_FOUND', `node ${id} was removed from the cluster`);
    return node;
  }

  async drainNode(id: string): Promise<NodeRecord> {
    requireShape(fields.nodeId, 'node', id);
    return (await this.store.execute({ type: 'node.drain', nodeId: id })) as NodeRecord;
  }

  async removeNode(id: string): Promise<NodeRecord> {
    requireShape(fields.nodeId, 'node', id);
    await this.getNode(id, 'linearizable');
    await this.store.removeMember(id);
    if (this.store.status().role !== 'removed') {
      return found(await this.read((s) => s.getNode(id), 'linearizable'), 'node', id);
    }
    // This node removed itself and can no longer read linearizably. Its own apply marked the
    // record, unless a member told it of the committed removal first (the leader stopped sending
    // before it saw the commit): then its copy is a step behind, and the removal is still a fact.
    const record = found(await this.read((s) => s.getNode(id), 'local'), 'node', id);
    return record.status === 'removed' ? record : { ...record, status: 'removed' };
  }

  // --- VMs ---

  async createVm(req: CreateVmRequest): Promise<VmRecord> {
    return (await this.store.execute({
      type: 'vm.create',
      vmId: this.proposals.newVmId(),
      name: req.name,
      image: req.image,
      vcpus: req.vcpus,
      memoryMiB: req.memoryMiB,
      labels: req.labels ?? {},
      disks: req.disks ?? [],
      ...(req.nodeId !== undefined ? { nodeId: req.nodeId } : {}),
      at: this.proposals.now(),
    })) as VmRecord;
  }

  listVms(consistency: ReadConsistency): Promise<VmRecord[]> {
    return this.read((s) => s.listVms(), consistency);
  }

  async getVm(id: string, consistency: ReadConsistency): Promise<VmRecord> {
    return found(await this.read((s) => s.getVm(id), consistency), 'VM', id);
  }

  async startVm(id: string): Promise<VmRecord> {
    requireShape(fields.vmId, 'VM', id);
    return (await this.store.execute({ type: 'vm.start', vmId: id })) as VmRecord;
  }

  async stopVm(id: string): Promise<VmRecord> {
    requireShape(fields.vmId, 'VM', id);
    return (await this.store.execute({ type: 'vm.stop', vmId: id })) as VmRecord;
  }

  async deleteVm(id: string): Promise<VmRecord> {
    requireShape(fields.vmId, 'VM', id);
    return (await this.store.execute({ type: 'vm.delete', vmId: id })) as VmRecord;
  }

  async updateVmLabels(id: string, req: UpdateLabelsRequest): Promise<VmRecord> {
    requireShape(fields.vmId, 'VM', id);
    return (await this.store.execute({
      type: 'vm.labels',
      vmId: id,
      set: req.set,
      ...(req.expect !== undefined ? { expect: req.expect } : {}),
    })) as VmRecord;
  }

  // --- migrations ---

  async createMigration(req: CreateMigrationRequest): Promise<MigrationRecord> {
    return (await this.store.execute({
      type: 'migration.create',
      migrationId: this.proposals.newMigrationId(),
      vmId: req.vmId,
      targetNodeId: req.targetNodeId,
      policy: { ...DEFAULT_MIGRATION_POLICY, ...req.policy },
      ...(req.maxBandwidthBytesPerSec !== undefined
        ? { maxBandwidthBytesPerSec: req.maxBandwidthBytesPerSec }
        : {}),
      at: this.proposals.now(),
    })) as MigrationRecord;
  }

  listMigrations(consistency: ReadConsistency): Promise<MigrationRecord[]> {
    return this.read((s) => s.listMigrations(), consistency);
  }

  async getMigration(id: string, consistency: ReadConsistency): Promise<MigrationRecord> {
    return found(await this.read((s) => s.getMigration(id), consistency), 'migration', id);
  }

  async cancelMigration(id: string, req: CancelMigrationRequest): Promise<MigrationRecord> {
    requireShape(fields.migrationId, 'migration', id);
    return (await this.store.execute({
      type: 'migration.cancel',
      migrationId: id,
      ...(req.reason !== undefined ? { reason: req.reason } : {}),
      at: this.proposals.now(),
    })) as MigrationRecord;
  }

  // --- cluster ---

  status(): ClusterStatus {
    return this.store.status();
  }

  async members(consistency: ReadConsistency): Promise<ClusterMember[]> {
    const status = this.store.status();
    const nodes = await this.read((s) => s.listNodes(), consistency);
    const member = (raftId: number, role: ClusterMember['role']): ClusterMember => {
      const node = nodes.find((n) => n.raftId === raftId);
      return {
        raftId,
        nodeId: node?.id ?? null,
        name: node?.name ?? null,
        role,
        isLeader: status.leaderRaftId === raftId,
        apiUrl: node?.apiUrl ?? null,
        peerAddr: node?.peerAddr ?? null,
        status: node?.status ?? null,
      };
    };
    return [
      ...status.voters.map((id) => member(id, 'voter')),
      ...status.learners.map((id) => member(id, 'learner')),
    ];
  }

  /** The current leader; ERR_UNAVAILABLE while there is none (an election is under way or quorum is lost). */
  async leader(consistency: ReadConsistency): Promise<ClusterMember> {
    const { leaderRaftId } = this.store.status();
    if (leaderRaftId === null) throw new DomainError('ERR_UNAVAILABLE', 'the cluster has no leader');
    const members = await this.members(consistency);
    return (
      members.find((m) => m.raftId === leaderRaftId) ?? {
        raftId: leaderRaftId,
        nodeId: null,
        name: null,
        role: 'voter',
        isLeader: true,
        apiUrl: null,
        peerAddr: null,
        status: null,
      }
    );
  }

  // --- tokens ---

  /** Only the token's SHA-256 is replicated; the caller gets the token itself, this once. */
  async createToken(req: CreateTokenRequest): Promise<{ token: string; record: ApiTokenRecord }> {
    const token = this.proposals.newApiToken();
    const record = (await this.store.execute({
      type: 'token.add',
      tokenId: this.proposals.newTokenId(),
      name: req.name,
      role: req.role,
      sha256: sha256Hex(token),
      at: this.proposals.now(),
    })) as ApiTokenRecord;
    return { token, record };
  }

  listTokens(consistency: ReadConsistency): Promise<ApiTokenRecord[]> {
    return this.read((s) => s.listTokens(), consistency);
  }

  async revokeToken(id: string): Promise<ApiTokenRecord> {
    requireShape(fields.tokenId, 'token', id);
    return (await this.store.execute({ type: 'token.revoke', tokenId: id })) as ApiTokenRecord;
  }
}
