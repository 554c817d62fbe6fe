/**
 * The replicated state machine of the control plane. Every replica applies the same committed log
 * entries in the same order and so holds the same state: `apply` reads nothing but the command and its
 * index (ids and times come inside the command), and a rejected command changes nothing at all.
 */
import type { CommandOutcome } from './commands';
import { DomainError } from './errors';
import { CANCELLABLE_PHASES, canAdvance, isTerminal } from './migration-phases';
import { fits, pickNode } from './placement';
import {
  type ApiTokenRecord,
  diskIdAt,
  type MigrationRecord,
  type NodeCapacity,
  type NodeRecord,
  type VmRecord,
  type VmRecordStatus,
} from './records';
import { type CommandOf, clusterCommandSchema, issuePath, type ValidClusterCommand } from './schema';
import type { ClusterStateView } from './view';

const SNAPSHOT_FORMAT = 'dwcp-cluster-state';
const SNAPSHOT_VERSION = 1;

interface SnapshotBody {
  format: typeof SNAPSHOT_FORMAT;
  version: typeof SNAPSHOT_VERSION;
  appliedIndex: number;
  nodes: NodeRecord[];
  vms: VmRecord[];
  migrations: MigrationRecord[];
  tokens: ApiTokenRecord[];
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

function sortedById<T extends { id: string }>(records: Iterable<T>): T[] {
  return [...records].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

const notFound = (what: string, id: string, field?: string) =>
  new DomainError('ERR_NOT_FOUND', `${what} ${id} not found`, field);
const conflict = (message: string, field?: string) => new DomainError('ERR_CONFLICT', message, field);

export class ClusterStateMachine implements ClusterStateView {
  private applied = 0;
  private readonly nodes = new Map<string, NodeRecord>();
  private readonly vms = new Map<string, VmRecord>();
  private readonly migrations = new Map<string, MigrationRecord>();
  private readonly tokens = new Map<string, ApiTokenRecord>();

  // --- getters (ClusterStateView) ---

  get appliedIndex(): number {
    return this.applied;
  }

  listNodes(): NodeRecord[] {
    return sortedById(this.nodes.values());
  }

  getNode(id: string): NodeRecord | undefined {
    return this.nodes.get(id);
  }

  listVms(): VmRecord[] {
    return sortedById(this.vms.values());
  }

  getVm(id: string): VmRecord | undefined {
    return this.vms.get(id);
  }

  listMigrations(): MigrationRecord[] {
    return sortedById(this.migrations.values());
  }

  getMigration(id: string): MigrationRecord | undefined {
    return this.migrations.get(id);
  }

  activeMigrationOf(vmId: string): MigrationRecord | undefined {
    for (const m of this.migrations.values()) if (m.vmId === vmId && !isTerminal(m.phase)) return m;
    return undefined;
  }

  freeCapacity(nodeId: string): NodeCapacity | undefined {
    const node = this.nodes.get(nodeId);
    if (node === undefined) return undefined;
    let { vcpus, memoryMiB } = node.capacity;
    for (const vm of this.vms.values()) {
      if (vm.nodeId !== nodeId) continue;
      vcpus -= vm.vcpus;
      memoryMiB -= vm.memoryMiB;
    }
    for (const m of this.migrations.values()) {
      if (m.targetNodeId !== nodeId || isTerminal(m.phase)) continue;
      const vm = this.vms.get(m.vmId);
      if (vm === undefined) continue;
      vcpus -= vm.vcpus;
      memoryMiB -= vm.memoryMiB;
    }
    return { vcpus, memoryMiB };
  }

  listTokens(): ApiTokenRecord[] {
    return sortedById(this.tokens.values());
  }

  findTokenBySha256(sha256: string): ApiTokenRecord | undefined {
    for (const t of this.tokens.values()) if (t.sha256 === sha256) return t;
    return undefined;
  }

  // --- inputs ---

  /**
   * Applies the committed entry at `index`. A command that fails validation or a precondition is
   * rejected in the outcome, never thrown. It throws only when the caller breaks the log order.
   */
  apply(command: unknown, index: number): CommandOutcome {
    this.advanceTo(index);
    const parsed = clusterCommandSchema.safeParse(command);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const path = issue ? issuePath(issue.path) : '';
      const message = issue ? `${path ? `${path}: ` : ''}${issue.message}` : 'invalid command';
      return {
        ok: false,
        error: { code: 'ERR_INVALID_ARGUMENT', message, ...(path ? { field: path } : {}) },
      };
    }
    try {
      return { ok: true, result: this.dispatch(parsed.data, index) };
    } catch (e) {
      if (e instanceof DomainError) return { ok: false, error: e.toJSON() };
      throw e;
    }
  }

  /** Records that entries up to `index` were applied without a command (Raft's empty and conf-change entries). */
  advanceTo(index: number): void {
    if (!Number.isSafeInteger(index) || index <= this.applied) {
      throw new RangeError(`log index ${index} is not after the applied index ${this.applied}`);
    }
    this.applied = index;
  }

  /** Canonical bytes: the same state always gives the same snapshot. */
  snapshot(): Uint8Array {
    const body: SnapshotBody = {
      format: SNAPSHOT_FORMAT,
      version: SNAPSHOT_VERSION,
      appliedIndex: this.applied,
      nodes: this.listNodes(),
      vms: this.listVms(),
      migrations: this.listMigrations(),
      tokens: this.listTokens(),
    };
    return new TextEncoder().encode(JSON.stringify(body));
  }

  /** Replaces the whole state with a snapshot's. */
  restore(bytes: Uint8Array): void {
    const body = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes)) as Partial<SnapshotBody>;
    if (body.format !== SNAPSHOT_FORMAT || body.version !== SNAPSHOT_VERSION) {
      throw new Error(`not a ${SNAPSHOT_FORMAT} v${SNAPSHOT_VERSION} snapshot`);
    }
    if (
      !Number.isSafeInteger(body.appliedIndex) ||
      ![body.nodes, body.vms, body.migrations, body.tokens].every(Array.isArray)
    ) {
      throw new Error('snapshot is missing its index or records');
    }
    this.applied = body.appliedIndex as number;
    const fill = <T extends { id: string }>(map: Map<string, T>, records: T[] | undefined) => {
      map.clear();
      for (const r of records ?? []) map.set(r.id, deepFreeze(r));
    };
    fill(this.nodes, body.nodes);
    fill(this.vms, body.vms);
    fill(this.migrations, body.migrations);
    fill(this.tokens, body.tokens);
  }

  // --- command handlers: each checks every precondition before it changes anything ---

  private dispatch(c: ValidClusterCommand, index: number): unknown {
    switch (c.type) {
      case 'node.register':
        return this.registerNode(c, index);
      case 'node.drain':
        return this.drainNode(c, index);
      case 'node.remove':
        return this.removeNode(c, index);
      case 'vm.create':
        return this.createVm(c, index);
      case 'vm.start':
        return this.setVmPower(c.vmId, 'running', index);
      case 'vm.stop':
        return this.setVmPower(c.vmId, 'stopped', index);
      case 'vm.delete':
        return this.deleteVm(c, index);
      case 'vm.status':
        return this.reportVmStatus(c, index);
      case 'vm.labels':
        return this.setVmLabels(c, index);
      case 'migration.create':
        return this.createMigration(c, index);
      case 'migration.phase':
        return this.advanceMigration(c, index);
      case 'migration.cancel':
        return this.cancelMigration(c, index);
      case 'token.add':
        return this.addToken(c, index);
      case 'token.revoke':
        return this.revokeToken(c);
    }
  }

  private registerNode(c: CommandOf<'node.register'>, index: number): NodeRecord {
    const existing = this.nodes.get(c.nodeId);
    if (existing?.status === 'removed')
      throw conflict(`node ${c.nodeId} was removed and cannot rejoin under that id`);
    for (const other of this.nodes.values()) {
      if (other.id === c.nodeId) continue;
      if (other.raftId === c.raftId)
        throw conflict(`raft id ${c.raftId} belongs to node ${other.id}`, 'raftId');
      if (other.name === c.name && other.status !== 'removed') {
        throw conflict(`node name ${c.name} belongs to node ${other.id}`, 'name');
      }
    }
    if (existing !== undefined && existing.raftId !== c.raftId) {
      throw conflict(`node ${c.nodeId} has raft id ${existing.raftId}, not ${c.raftId}`, 'raftId');
    }
    const node: NodeRecord = {
      id: c.nodeId,
      raftId: c.raftId,
      name: c.name,
      apiUrl: c.apiUrl,
      peerAddr: c.peerAddr,
      status: existing?.status ?? 'ready',
      capacity: { ...c.capacity },
      labels: { ...c.labels },
      joinedAt: existing?.joinedAt ?? c.at,
      revision: index,
    };
    return this.put(this.nodes, node);
  }

  private requireNode(id: string, field?: string): NodeRecord {
    const node = this.nodes.get(id);
    if (node === undefined) throw notFound('node', id, field);
    return node;
  }

  private drainNode(c: CommandOf<'node.drain'>, index: number): NodeRecord {
    const node = this.requireNode(c.nodeId);
    if (node.status === 'removed') throw conflict(`node ${node.id} is removed`);
    if (node.status === 'draining') return node;
    return this.put(this.nodes, { ...node, status: 'draining', revision: index });
  }

  /**
   * Never refused for a known node: removing a dead host must always be possible. Its unfinished
   * migrations fail, and their VMs go back to running on their source.
   */
  private removeNode(c: CommandOf<'node.remove'>, index: number): NodeRecord {
    const node = this.requireNode(c.nodeId);
    if (node.status === 'removed') return node;
    for (const m of this.migrations.values()) {
      if (isTerminal(m.phase) || (m.sourceNodeId !== node.id && m.targetNodeId !== node.id)) continue;
      this.finishMigration(m, 'failed', `node ${node.id} was removed`, m.updatedAt, index);
    }
    return this.put(this.nodes, { ...node, status: 'removed', revision: index });
  }

  private createVm(c: CommandOf<'vm.create'>, index: number): VmRecord {
    if (this.vms.has(c.vmId)) throw conflict(`VM ${c.vmId} already exists`, 'vmId');
    for (const vm of this.vms.values()) {
      if (vm.name === c.name) throw conflict(`a VM named ${c.name} already exists (${vm.id})`, 'name');
    }
    const request = { vcpus: c.vcpus, memoryMiB: c.memoryMiB };
    const freeOf = (n: NodeRecord) => this.freeCapacity(n.id) ?? { vcpus: 0, memoryMiB: 0 };
    let node: NodeRecord | undefined;
    if (c.nodeId !== undefined) {
      node = this.requireNode(c.nodeId, 'nodeId');
      if (node.status !== 'ready') throw conflict(`node ${node.id} is ${node.status}`, 'nodeId');
      if (!fits(node, freeOf(node), request)) {
        throw conflict(`node ${node.id} cannot hold ${c.vcpus} vCPUs and ${c.memoryMiB} MiB`, 'nodeId');
      }
    } else {
      node = pickNode(this.listNodes(), freeOf, request);
      if (node === undefined) {
        throw conflict(`no ready node has ${c.memoryMiB} MiB free for ${c.vcpus} vCPUs`, 'memoryMiB');
      }
    }
    const vm: VmRecord = {
      id: c.vmId,
      name: c.name,
      image: c.image,
      vcpus: c.vcpus,
      memoryMiB: c.memoryMiB,
      nodeId: node.id,
      state: 'stopped',
      labels: { ...c.labels },
      ...(c.disks.length > 0 ? { disks: c.disks.map((d, i) => ({ id: diskIdAt(i), ...d })) } : {}),
      createdAt: c.at,
      revision: index,
    };
    return this.put(this.vms, vm);
  }

  private requireVm(id: string, field?: string): VmRecord {
    const vm = this.vms.get(id);
    if (vm === undefined) throw notFound('VM', id, field);
    return vm;
  }

  /** Idempotent: starting a running VM (or stopping a stopped one) succeeds and changes nothing. */
  private setVmPower(vmId: string, state: 'running' | 'stopped', index: number): VmRecord {
    const vm = this.requireVm(vmId);
    if (vm.state === 'migrating') throw conflict(`VM ${vm.id} is migrating`);
    if (vm.state === state) return vm;
    if (state === 'running' && this.nodes.get(vm.nodeId)?.status === 'removed') {
      throw conflict(`VM ${vm.id} is on node ${vm.nodeId}, which was removed`);
    }
    return this.put(this.vms, { ...vm, state, revision: index });
  }

  private deleteVm(c: CommandOf<'vm.delete'>, index: number): VmRecord {
    const vm = this.requireVm(c.vmId);
    const active = this.activeMigrationOf(vm.id);
    if (active !== undefined) throw conflict(`VM ${vm.id} has an active migration (${active.id})`);
    this.vms.delete(vm.id);
    return deepFreeze({ ...vm, state: 'deleted', revision: index });
  }

  /**
   * The observed state, from the VM's node and no other: a report from a node that does not host the
   * VM (a migration's source once it is done, a node that lost it) is refused, and so is one older than
   * the status kept (its `observedRevision` is lower) or from a revision not yet applied. A report that
   * changes nothing is accepted and changes nothing (`since` keeps when the phase began).
   */
  private reportVmStatus(c: CommandOf<'vm.status'>, index: number): VmRecord {
    const vm = this.requireVm(c.vmId);
    if (c.nodeId !== vm.nodeId)
      throw conflict(`VM ${vm.id} is on node ${vm.nodeId}, not ${c.nodeId}`, 'nodeId');
    if (c.observedRevision > vm.revision) {
      throw conflict(
        `VM ${vm.id} is at revision ${vm.revision}; a report cannot observe revision ${c.observedRevision}`,
        'observedRevision',
      );
    }
    const kept = vm.status;
    if (kept !== undefined && c.observedRevision < kept.observedRevision) {
      throw conflict(
        `VM ${vm.id} has a status from revision ${kept.observedRevision}; this report is from ${c.observedRevision}`,
        'observedRevision',
      );
    }
    if (
      kept !== undefined &&
      kept.nodeId === c.nodeId &&
      kept.phase === c.phase &&
      kept.reason === c.reason &&
      kept.pid === c.pid
    ) {
      return vm;
    }
    const status: VmRecordStatus = {
      phase: c.phase,
      ...(c.reason !== undefined ? { reason: c.reason } : {}),
      ...(c.pid !== undefined ? { pid: c.pid } : {}),
      nodeId: c.nodeId,
      since: c.at,
      observedRevision: c.observedRevision,
    };
    return this.put(this.vms, { ...vm, status, revision: index });
  }

  private setVmLabels(c: CommandOf<'vm.labels'>, index: number): VmRecord {
    const vm = this.requireVm(c.vmId);
    for (const [key, expected] of Object.entries(c.expect ?? {})) {
      const actual = Object.hasOwn(vm.labels, key) ? vm.labels[key] : null;
      if (actual !== expected) {
        const want = expected === null ? 'to be absent' : `to be ${JSON.stringify(expected)}`;
        const got = actual === null ? 'absent' : JSON.stringify(actual);
        throw conflict(`label ${key}: expected ${want}, is ${got}`, `expect.${key}`);
      }
    }
    const labels: Record<string, string> = { ...vm.labels };
    for (const [key, value] of Object.entries(c.set)) {
      if (value === null) delete labels[key];
      else labels[key] = value;
    }
    if (Object.keys(labels).length > 64)
      throw new DomainError('ERR_INVALID_ARGUMENT', 'at most 64 labels', 'set');
    return this.put(this.vms, { ...vm, labels, revision: index });
  }

  private createMigration(c: CommandOf<'migration.create'>, index: number): MigrationRecord {
    if (this.migrations.has(c.migrationId)) throw conflict(`migration ${c.migrationId} already exists`);
    const vm = this.requireVm(c.vmId, 'vmId');
    const target = this.requireNode(c.targetNodeId, 'targetNodeId');
    const active = this.activeMigrationOf(vm.id);
    if (active !== undefined)
      throw conflict(`VM ${vm.id} already has an active migration (${active.id})`, 'vmId');
    if (vm.state !== 'running')
      throw conflict(`VM ${vm.id} is ${vm.state}; only a running VM is live-migrated`, 'vmId');
    if ((vm.disks?.length ?? 0) > 0) {
      // Its disks live on its node; a migration of RAM alone would leave them behind (issue 13 item 2).
      throw conflict(
        `VM ${vm.id} has ${vm.disks?.length} disk(s), and moving disks with a live migration is not built yet`,
        'vmId',
      );
    }
    if (target.id === vm.nodeId)
      throw conflict(`VM ${vm.id} is already on node ${target.id}`, 'targetNodeId');
    if (target.status !== 'ready')
      throw conflict(`target node ${target.id} is ${target.status}`, 'targetNodeId');
    if (this.nodes.get(vm.nodeId)?.status === 'removed') {
      throw conflict(`VM ${vm.id} is on node ${vm.nodeId}, which was removed`, 'vmId');
    }
    const free = this.freeCapacity(target.id) ?? { vcpus: 0, memoryMiB: 0 };
    if (!fits(target, free, vm)) {
      throw conflict(
        `target node ${target.id} has ${free.memoryMiB} MiB free, VM needs ${vm.memoryMiB}`,
        'targetNodeId',
      );
    }
    const migration: MigrationRecord = {
      id: c.migrationId,
      vmId: vm.id,
      sourceNodeId: vm.nodeId,
      targetNodeId: target.id,
      phase: 'pending',
      stats: {},
      ...(c.policy !== undefined ? { policy: c.policy } : {}),
      ...(c.maxBandwidthBytesPerSec !== undefined
        ? { maxBandwidthBytesPerSec: c.maxBandwidthBytesPerSec }
        : {}),
      createdAt: c.at,
      updatedAt: c.at,
      revision: index,
    };
    this.put(this.vms, { ...vm, state: 'migrating', revision: index });
    return this.put(this.migrations, migration);
  }

  private requireMigration(id: string): MigrationRecord {
    const m = this.migrations.get(id);
    if (m === undefined) throw notFound('migration', id);
    return m;
  }

  private advanceMigration(c: CommandOf<'migration.phase'>, index: number): MigrationRecord {
    const m = this.requireMigration(c.migrationId);
    if (!canAdvance(m.phase, c.phase)) {
      throw conflict(`migration ${m.id} cannot go from ${m.phase} to ${c.phase}`, 'phase');
    }
    const stats = { ...m.stats, ...c.stats };
    const path = c.path ?? m.path;
    const merged: MigrationRecord = path === undefined ? { ...m, stats } : { ...m, stats, path };
    if (isTerminal(c.phase)) return this.finishMigration(merged, c.phase, c.reason, c.at, index);
    const next: MigrationRecord = { ...merged, phase: c.phase, updatedAt: c.at, revision: index };
    if (c.reason !== undefined) next.reason = c.reason;
    return this.put(this.migrations, next);
  }

  private cancelMigration(c: CommandOf<'migration.cancel'>, index: number): MigrationRecord {
    const m = this.requireMigration(c.migrationId);
    if (isTerminal(m.phase)) throw conflict(`migration ${m.id} is already ${m.phase}`);
    if (!CANCELLABLE_PHASES.includes(m.phase)) {
      throw conflict(`migration ${m.id} is ${m.phase}; it can no longer be cancelled`);
    }
    return this.finishMigration(m, 'cancelled', c.reason ?? 'cancelled by request', c.at, index);
  }

  /** Ends a migration and settles its VM: on the target when done, running on its source otherwise. */
  private finishMigration(
    m: MigrationRecord,
    phase: 'done' | 'failed' | 'cancelled',
    reason: string | undefined,
    at: string,
    index: number,
  ): MigrationRecord {
    const vm = this.vms.get(m.vmId);
    if (vm !== undefined) {
      const nodeId = phase === 'done' ? m.targetNodeId : m.sourceNodeId;
      // What the source observed says nothing about the target's copy, which reports its own.
      const { status, ...rest } = vm;
      const kept = nodeId === vm.nodeId && status !== undefined ? { status } : {};
      this.put(this.vms, { ...rest, ...kept, nodeId, state: 'running', revision: index });
    }
    const next: MigrationRecord = { ...m, phase, updatedAt: at, revision: index };
    if (reason !== undefined) next.reason = reason;
    return this.put(this.migrations, next);
  }

  private addToken(c: CommandOf<'token.add'>, index: number): ApiTokenRecord {
    if (this.tokens.has(c.tokenId)) throw conflict(`token ${c.tokenId} already exists`, 'tokenId');
    if (this.findTokenBySha256(c.sha256) !== undefined)
      throw conflict('a token with this hash already exists', 'sha256');
    const token: ApiTokenRecord = {
      id: c.tokenId,
      name: c.name,
      role: c.role,
      sha256: c.sha256,
      createdAt: c.at,
      revision: index,
    };
    return this.put(this.tokens, token);
  }

  /** The last admin token is never revoked: without one, nobody could ever manage the cluster again. */
  private revokeToken(c: CommandOf<'token.revoke'>): ApiTokenRecord {
    const token = this.tokens.get(c.tokenId);
    if (token === undefined) throw notFound('token', c.tokenId);
    if (
      token.role === 'admin' &&
      ![...this.tokens.values()].some((t) => t.role === 'admin' && t.id !== token.id)
    ) {
      throw conflict(
        `token ${token.id} is the cluster's last admin token; create another admin token before revoking it`,
        'id',
      );
    }
    this.tokens.delete(token.id);
    return token;
  }

  private put<T extends { id: string }>(map: Map<string, T>, record: T): T {
    map.set(record.id, deepFreeze(record));
    return record;
  }
}
