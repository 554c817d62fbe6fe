/**
 * The hypervisor layer of a DWCP node: the driver contract (`HypervisorDriver`), the QEMU driver
 * over QMP (`QemuDriver`, `QmpClient`), and a loudly simulated driver for machines without QEMU.
 */

export { type AcceleratorChoice, chooseAccelerator, probeAccelerator } from './accelerator';
export type {
  Accelerator,
  HypervisorDriver,
  HypervisorLogger,
  SerialLinesOptions,
  VmDisk,
  VmHandle,
  VmRunState,
  VmSpec,
  VmStatus,
} from './driver';
export { type AdoptFailureReason, HypervisorError, type HypervisorErrorCode, QmpError } from './errors';
export type { QmpEvent, VmEvent } from './events';
export {
  type BuiltInDriverOptions,
  builtInDriver,
  type DriverProvider,
  HYPERVISOR_DRIVER,
  HypervisorModule,
  hypervisorLogger,
} from './hypervisor.module';
export {
  FINAL_MIGRATION_STATUSES,
  type MigrationCapabilities,
  type MigrationParameters,
  type MigrationParameterValues,
  type MigrationProgress,
  type MigrationStatus,
  type MigrationUri,
} from './migration';
export { followMigration } from './migration-watch';
export { migrateWithQemuAlone, type QemuAloneOptions, type QemuAloneResult } from './qemu-alone';
export { buildQemuArgs } from './qemu-args';
export { QemuDriver, type QemuDriverOptions } from './qemu-driver';
export { identifyQemu, type QemuIdentity } from './qemu-runtime';
export { QmpClient, type QmpClientOptions, type QmpVersion } from './qmp-client';
export { waitForLine } from './serial-console';
export { SimulatedDriver, type SimulatedDriverOptions } from './simulated-driver';
