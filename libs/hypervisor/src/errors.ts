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
  | 'ERR_HV_TIMEOUT';

export class HypervisorError extends Error {
  override readonly name = 'HypervisorError';
  readonly field: string | undefined;

  constructor(
    readonly code: HypervisorErrorCode,
    message: string,
    options: { field?: string; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.field = options.field;
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
