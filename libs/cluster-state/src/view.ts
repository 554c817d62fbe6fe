/** The read-only face of the replicated state: what `ClusterStore.read` queries see. */
import type { ApiTokenRecord, MigrationRecord, NodeCapacity, NodeRecord, VmRecord } from './records';

export interface ClusterStateView {
  /** Index of the last log entry this state reflects. */
  readonly appliedIndex: number;
  /** All node records, including removed ones, ordered by id. */
  listNodes(): NodeRecord[];
  getNode(id: string): NodeRecord | undefined;
  /** All VMs, ordered by id. */
  listVms(): VmRecord[];
  getVm(id: string): VmRecord | undefined;
  /** All migrations, finished ones too, ordered by id. */
  listMigrations(): MigrationRecord[];
  getMigration(id: string): MigrationRecord | undefined;
  /** The migration of this VM that has not reached a terminal phase, if any. */
  activeMigrationOf(vmId: string): MigrationRecord | undefined;
  /** Capacity left on a node after the VMs placed on it and the migrations headed to it. */
  freeCapacity(nodeId: string): NodeCapacity | undefined;
  listTokens(): ApiTokenRecord[];
  findTokenBySha256(sha256: string): ApiTokenRecord | undefined;
}
