/**
 * Errors of the hypervisor layer: `QmpError` is QEMU refusing a command (its own error class and
 * text), `HypervisorError` is everything else, with a stable code.
 */

export type HypervisorErrorCode =
  /** The spec or an argument is out of range; `field` names it. */
  | 'ERR_HV_INVALID_ARGUMENT'
  /** The handle names no VM this driver runs (never launched, or already destroyed). */
  | 'ERR_HV_VM_NOT_FOUND'
  /** QEMU exited, or its QMP socket never came up, before the VM was ready. */
  | 'ERR_HV_LAUNCH_FAILED'
  /** The VM's process is gone, so what was asked of it cannot happen. */
  | 'ERR_HV_VM_EXITED'
  /** The QMP connection closed (QEMU exited or crashed) with the call still pending. */
  | 'ERR_HV_QMP_DISCONNECTED'
  /** QEMU sent something that is not QMP. */
  | 'ERR_HV_QMP_PROTOCOL'
  /** A QMP call or a wait took longer than allowed. */
  | 'ERR_HV_TIMEOUT'
  /** A VM left by an earlier driver could not be taken over; `reason` says why. */
  | 'ERR_HV_ADOPT_FAILED';

/** Why a VM left running by an earlier driver (a node daemon before its restart) was not taken over. */
export type AdoptFailureReason =
  /** No runtime directory for it: it was never launched here, or it was cleaned up. */
  | 'no-runtime-dir'
  | 'no-pidfile'
  /** The pidfile's process is gone: the QEMU died while no driver watched it. */
  | 'process-gone'
  /** The pidfile's pid now belongs to another process. */
  | 'foreign-process'
  /** The QEMU runs but does not answer on its QMP socket. */
  | 'qmp-unreachable'
  /** QMP answered with another VM's name. */
  | 'identity-mismatch'
  /** The guest shut down, panicked or hit an internal error. */
  | 'unusable-state';

export class HypervisorError extends Error {
  override readonly name = 'HypervisorError';
  readonly field: string | undefined;
  /** ERR_HV_ADOPT_FAILED: why. */
  readonly reason: AdoptFailureReason | undefined;

  constructor(
    readonly code: HypervisorErrorCode,
    message: string,
    options: { field?: string; reason?: AdoptFailureReason; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.field = options.field;
    this.reason = options.reason;
  }

  static invalidArgument(field: string, message: string): HypervisorError {
    return new HypervisorError('ERR_HV_INVALID_ARGUMENT', `${field}: ${message}`, { field });
  }
}

/** An `error` reply from QEMU: `class` is QEMU's error class (e.g. `CommandNotFound`, `GenericError`). */
export class QmpError extends Error {
  override readonly name = 'QmpError';
  readonly class: string;

  constructor(
    readonly command: string,
    errorClass: string,
    readonly desc: string,
  ) {
    super(`${command}: ${desc} (${errorClass})`);
    this.class = errorClass;
  }
}
