/**
 * The order a node stops in, once its API has drained: migrations first (each outgoing run rolls
 * back, so its VM stays here), then the VM host (which leaves its VMs running unless told to stop
 * them), then consensus (which hands leadership over).
 * Nest's own shutdown hooks run in module order, which is not this order, so no lib module
 * closes itself; this provider closes whichever of them the node was assembled with.
 */
import { Inject, Injectable, Optional } from '@nestjs/common';
import { ACP_RUNTIME, type AcpRuntime } from '@novacron/consensus';
import { VmHostFollower } from '@novacron/host';
import { MigrationService } from '@novacron/migration';

@Injectable()
export class NodeLifecycle {
  private closing: Promise<void> | undefined;

  constructor(
    @Optional() @Inject(MigrationService) private readonly migration?: MigrationService,
    @Optional() @Inject(VmHostFollower) private readonly host?: VmHostFollower,
    @Optional() @Inject(ACP_RUNTIME) private readonly consensus?: AcpRuntime,
  ) {}

  /** Idempotent (the first call's options hold); a failure of one step does not skip the next. */
  close(options: { stopVms?: boolean } = {}): Promise<void> {
    this.closing ??= (async () => {
      const errors: unknown[] = [];
      for (const step of [
        () => this.migration?.close(),
        () => this.host?.close(options),
        () => this.consensus?.close(),
      ]) {
        try {
          await step();
        } catch (e) {
          errors.push(e);
        }
      }
      if (errors.length > 0) throw errors[0];
    })();
    return this.closing;
  }
}
