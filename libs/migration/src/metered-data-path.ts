/**
 * A data-path end that meters itself into `dwcp_amst_*` while it runs: its stats are sampled
 * twice a second (and once more at the end), so a migration's transfer shows on the node's
 * /metrics like any other AMST transfer, frame-integrity counters included.
 */
import type { MigrationSinkStats, MigrationSourceStats } from '@novacron/native';
import { type AmstMetrics, ReceiveMeter, resultOf, SendMeter } from '@novacron/transport';

const SAMPLE_MS = 500;

interface NativeEnd<S, R extends { stats: S }> {
  stats(): S;
  finished(): Promise<R>;
  cancel(): void;
}

interface Meter<S> {
  update(stats: S): void;
  finish(result: 'ok' | 'failed' | 'cancelled'): void;
}

function metered<S, R extends { stats: S }>(end: NativeEnd<S, R>, meter: Meter<S>): NativeEnd<S, R> {
  const sample = () => {
    try {
      meter.update(end.stats());
    } catch {
      // An end that is gone has no stats; its finished() says how it ended.
    }
  };
  const timer = setInterval(sample, SAMPLE_MS);
  timer.unref();
  const finished = end.finished().then(
    (report) => {
      clearInterval(timer);
      meter.update(report.stats);
      meter.finish('ok');
      return report;
    },
    (e: unknown) => {
      clearInterval(timer);
      sample();
      meter.finish(resultOf(e));
      throw e;
    },
  );
  // The native end's finished() may be called once: every caller shares this one.
  finished.catch(() => undefined);
  return { stats: () => end.stats(), finished: () => finished, cancel: () => end.cancel() };
}

export function meteredSource<R extends { stats: MigrationSourceStats }>(
  end: NativeEnd<MigrationSourceStats, R> & { setBufferBytes(bytes: number): void },
  metrics: AmstMetrics,
): NativeEnd<MigrationSourceStats, R> & { setBufferBytes(bytes: number): void } {
  const meter = new SendMeter(metrics);
  const ends = metered(end, {
    update: (s: MigrationSourceStats) => meter.update(s.transfer, s.connectionsFailed),
    finish: (r) => meter.finish(r),
  });
  return { ...ends, setBufferBytes: (bytes) => end.setBufferBytes(bytes) };
}

export function meteredSink<R extends { stats: MigrationSinkStats }>(
  end: NativeEnd<MigrationSinkStats, R> & { readonly port: number },
  metrics: AmstMetrics,
): NativeEnd<MigrationSinkStats, R> & { readonly port: number } {
  const meter = new ReceiveMeter(metrics);
  const ends = metered(end, {
    update: (s: MigrationSinkStats) =>
      meter.update({
        bytes: s.transfer.bytes,
        framesRejected: s.framesRejected,
        connectionsCorrupted: s.connectionsCorrupted,
      }),
    finish: (r) => meter.finish(r),
  });
  return { ...ends, port: end.port };
}
