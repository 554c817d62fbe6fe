/**
 * The loop between PBA and one migration: each progress interval it turns AMST's counters into a
 * path sample for PBA, then re-aims QEMU at the path. Where QEMU takes a switchover bandwidth
 * (8.2 and later) its stop decision is aimed at PBA's prediction times the reduction of the
 * stream lately, and its rate is left to the send buffer's backpressure; before that, QEMU's
 * `max-bandwidth` is aimed at the same product, so its own rate estimate, which decides when it
 * stops the guest, is the path's and not the pipeline's buffers'. It also sizes the send buffer,
 * gives the ETA from the prediction, and the record of what was measured, predicted and chosen.
 * Pure: the caller passes the clock.
 */
import type { PathEstimate, PathSample, PeerPathView } from '@novacron/bandwidth';
import type { MigrationPath } from '@novacron/cluster-state';
import { kernelSample } from './kernel-sample';
import {
  BULK_BUFFER_BDPS,
  bufferBytesFor,
  CONVERGING_BUFFER_BDPS,
  downtimeLimitFor,
  type MigrationParameterChoice,
  PAUSE_BUDGET_MS,
} from './parameters';
import type { ProbeResult, SourceCounters, TransferCounters } from './ports';

/** Above the prediction, so a path faster than predicted is found (samples limited by QEMU's cap do not lower PBA). */
const HEADROOM = 1.15;
/** Changes smaller than this are not sent to QEMU. */
const HYSTERESIS = 0.1;
const MIN_MAX_BANDWIDTH = 1024 * 1024;
/** 10 GiB/s: past any path here, and far inside what QEMU accepts. */
export const MAX_MAX_BANDWIDTH = 10 * 1024 ** 3;
/** Samples (of about 0.5 s) whose peak goodput sizes the bulk buffer: slow start is not the path. */
const PEAK_WINDOW = 4;
/** Wire bytes an interval needs before its reduction counts (a few frames). */
const MIN_REDUCTION_WIRE_BYTES = 256 * 1024;
/**
 * How far back the ETA looks, at least, for the wire bytes each byte of QEMU's remaining RAM costs:
 * short, so that a stretch of zero pages or of random pages counts for the rest as soon as QEMU is
 * in it (with 4 s, the burst before a link's step still weighed at 50 % in link-change.spec.ts).
 */
const ETA_WINDOW_MS = 2000;
/** RAM the window must hold (a few of HDE's batches): on a slow path it reaches back further. */
const MIN_ETA_WINDOW_RAM = 8 * 1024 * 1024;
/** But never further back than this. */
const MAX_ETA_WINDOW_MS = 20_000;

const median = (xs: number[]): number | undefined => {
  if (xs.length === 0) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};

/** The propagation RTT where measured: the queue a transfer builds is not bandwidth-delay product. */
const baseRtt = (e: PathEstimate): number | undefined => e.minRttMs ?? e.rttMs;

interface EtaReading {
  atMs: number;
  remaining: number;
  wire: number;
}

/**
 * RAM QEMU covered and wire bytes the encoder emitted over the readings, from the intervals in which
 * QEMU's remaining count fell; one in which it rose (a dirty-bitmap sync added pages) is left out,
 * since how much it sent meanwhile is unknown.
 */
function windowMix(readings: readonly EtaReading[]): { ram: number; wire: number } {
  let ram = 0;
  let wire = 0;
  for (let i = 1; i < readings.length; i++) {
    const prev = readings[i - 1] as EtaReading;
    const cur = readings[i] as EtaReading;
    if (cur.remaining > prev.remaining) continue;
    ram += prev.remaining - cur.remaining;
    wire += Math.max(0, cur.wire - prev.wire);
  }
  return { ram, wire };
}

export class PathSteering {
  private last: TransferCounters | undefined;
  private lastSample: PathSample | undefined;
  private maxBandwidth: number;
  private bufferBytes: number;
  private downtimeLimit: number;
  /** The encoder's codec as last seen, and how often its governor changed it. */
  private codec: string | undefined;
  private codecChanges = 0;
  /** Goodput of the last PEAK_WINDOW samples. */
  private readonly recentGoodput: number[] = [];
  /** QEMU's stream as the pipeline took it, bytes per second, over the last PEAK_WINDOW intervals. */
  private readonly recentDrain: number[] = [];
  private drainMark: { fromQemu: number; atS: number } | undefined;
  /** QEMU's first pass is over: it iterates over dirtied pages, and may stop the guest any time. */
  private converging = false;
  /** QEMU takes a switchover bandwidth: set, and max-bandwidth left uncapped. */
  private switchover = false;
  private switchoverBandwidth: number | undefined;
  /** Source counters at the last reduction reading, for the reduction of the stream lately. */
  private reductionMark: { fromQemu: number; wire: number } | undefined;
  private recentReduction: number | undefined;
  /** What the probe before the stream found, for the record's basis. */
  private probe: string | undefined;
  /** The probe measured past slow start, so the buffer may follow the first samples down. */
  private probedRate = false;
  /** QEMU's remaining RAM and the encoder's wire bytes at each recent reading, for the ETA. */
  private readonly etaReadings: EtaReading[] = [];
  private lastWirePerRam: number | undefined;

  /**
   * `adjustable` is false when the operator or the caller fixed max-bandwidth: then it is only
   * measured and reported, never changed; `adjustableDowntime` likewise for downtime-limit.
   */
  constructor(
    private readonly path: PeerPathView | undefined,
    private readonly chosen: MigrationParameterChoice,
    private readonly adjustable: boolean,
    private readonly adjustableDowntime = true,
  ) {
    this.maxBandwidth = chosen.maxBandwidthBytesPerSec;
    this.bufferBytes = chosen.bufferBytes;
    this.downtimeLimit = chosen.downtimeLimitMs;
  }

  get downtimeLimitMs(): number {
    return this.downtimeLimit;
  }

  /** QEMU's downtime-limit for the measured path and the current buffer, when it should move by 10 ms or more. */
  redowntime(): number | undefined {
    if (!this.adjustableDowntime) return undefined;
    const estimate = this.path?.estimate();
    // Only once this path was measured: before that the RTT is Raft's, which counts processing too.
    if (estimate?.measured === undefined) return undefined;
    // The guest stops once QEMU iterates over dirtied pages, with the converging buffer in flight.
    const rtt = baseRtt(estimate);
    const atStop = bufferBytesFor(estimate.bandwidthBytesPerSec, rtt, CONVERGING_BUFFER_BDPS);
    const target = downtimeLimitFor(
      rtt,
      this.converging ? this.bufferBytes : atStop,
      estimate.bandwidthBytesPerSec,
    );
    if (Math.abs(target - this.downtimeLimit) < 10) return undefined;
    this.downtimeLimit = target;
    return target;
  }

  get maxBandwidthBytesPerSec(): number {
    return this.maxBandwidth;
  }

  get sendBufferBytes(): number {
    return this.bufferBytes;
  }

  /**
   * QEMU's progress: once it synced the dirty bitmap twice, its first pass is over, and the buffer
   * shrinks to what may be in flight when it stops the guest. With the sender's counters at the
   * same moment, the reading also feeds the ETA's window.
   */
  progressed(
    progress: { dirtySyncCount: number; remainingBytes?: number },
    counters?: SourceCounters,
    atMs?: number,
  ): void {
    if (progress.dirtySyncCount >= 2) this.converging = true;
    if (progress.remainingBytes === undefined || counters === undefined || atMs === undefined) return;
    const readings = this.etaReadings;
    const last = readings.at(-1);
    if (last !== undefined && atMs <= last.atMs) return;
    readings.push({ atMs, remaining: progress.remainingBytes, wire: counters.wireBytes });
    // The oldest reading goes once the window after it still spans ETA_WINDOW_MS and holds MIN_ETA_WINDOW_RAM.
    while (readings.length > 2) {
      const second = readings[1] as EtaReading;
      const tooOld = (readings[0] as EtaReading).atMs < atMs - MAX_ETA_WINDOW_MS;
      const spare =
        second.atMs <= atMs - ETA_WINDOW_MS && windowMix(readings.slice(1)).ram >= MIN_ETA_WINDOW_RAM;
      if (!tooOld && !spare) break;
      readings.shift();
    }
  }

  /**
   * AMST's send buffer for the path, when it should change by more than 20 %. During QEMU's first
   * pass it is BULK_BUFFER_BDPS bandwidth-delay products at the higher of the prediction and the
   * recent peak goodput, and does not shrink in the first samples (slow start is not the path's
   * rate); then CONVERGING_BUFFER_BDPS at the prediction.
   */
  rebuffer(): number | undefined {
    const estimate = this.path?.estimate();
    const predicted = estimate?.bandwidthBytesPerSec;
    if (predicted === undefined) return undefined;
    let target: number;
    if (this.converging) {
      target = bufferBytesFor(predicted, estimate && baseRtt(estimate), CONVERGING_BUFFER_BDPS);
    } else {
      const rate = Math.max(predicted, ...this.recentGoodput);
      target = bufferBytesFor(rate, estimate && baseRtt(estimate), BULK_BUFFER_BDPS);
      if (this.recentGoodput.length < PEAK_WINDOW && !this.probedRate) {
        target = Math.max(target, this.bufferBytes);
      }
    }
    if (Math.abs(target - this.bufferBytes) <= this.bufferBytes * 0.2) return undefined;
    this.bufferBytes = target;
    return target;
  }

  /** One interval's sample from the sender's counters, fed to PBA; undefined for the first call or an empty interval. */
  sample(counters: SourceCounters, atMs: number): PathSample | undefined {
    if (typeof counters.codec === 'string') this.codec = counters.codec;
    this.codecChanges = counters.codecChanges ?? this.codecChanges;
    this.noteReduction(counters);
    const now = counters.transfer;
    if (now === undefined) return undefined;
    const prev = this.last;
    this.last = now;
    if (prev === undefined) return undefined;
    const dt = now.elapsedSeconds - prev.elapsedSeconds;
    if (dt <= 0) return undefined;
    const active = now.connections.filter((c) => c.active);
    const rtts = active.flatMap((c) => (typeof c.srttMs === 'number' ? [c.srttMs] : []));
    const minRtts = now.connections.flatMap((c) => (typeof c.minRttMs === 'number' ? [c.minRttMs] : []));
    const goodput = Math.max(0, now.bytesAcked - prev.bytesAcked) / dt;
    const rttMs = median(rtts);
    const sample: PathSample = {
      atMs,
      goodputBytesPerSec: goodput,
      connections: active.length,
      framesResent: Math.max(0, now.framesResent - prev.framesResent),
      // The send buffer was far from full, so the sender waited for QEMU, not for acks: QEMU (its
      // cap, or a guest with little left to send), not the path, set this interval's rate.
      appLimited: now.bytesWritten - now.bytesAcked < this.bufferBytes / 2,
      ...(rttMs === undefined ? {} : { rttMs }),
      ...(minRtts.length > 0 ? { minRttMs: Math.min(...minRtts) } : {}),
    };
    const kernel = kernelSample(prev, now);
    if (kernel !== undefined) sample.kernel = kernel;
    this.lastSample = sample;
    this.recentGoodput.push(goodput);
    if (this.recentGoodput.length > PEAK_WINDOW) this.recentGoodput.shift();
    this.noteDrain(counters.bytesFromQemu, now.elapsedSeconds);
    this.path?.observe(sample);
    return sample;
  }

  /**
   * PBA's first sample of the path: the probe's best round. A probe that reached its plateau
   * measured the path's rate; one cut short (its time limit, QEMU's stream) was still in slow
   * start, and says only that the path carries at least that much (an application-limited sample,
   * which PBA never takes as the first word on a path), besides the RTT.
   */
  probed(result: ProbeResult, atMs: number): void {
    const plateau = result.endedBy === 'plateau';
    // A probe cut short measured slow start and freshly opened connections (its RTTs count the
    // handshakes' queueing: 204 ms on a 100 ms path): PBA gets nothing from it.
    if (plateau) {
      const sample: PathSample = {
        atMs,
        goodputBytesPerSec: result.goodputBytesPerSec,
        connections: result.connections,
        ...(typeof result.rttMs === 'number' ? { rttMs: result.rttMs } : {}),
        ...(typeof result.minRttMs === 'number' ? { minRttMs: result.minRttMs } : {}),
      };
      this.lastSample = sample;
      this.recentGoodput.push(result.goodputBytesPerSec);
      this.probedRate = true;
      this.path?.observe(sample);
    }
    const mbit = ((result.goodputBytesPerSec * 8) / 1e6).toFixed(1);
    const rtt = typeof result.minRttMs === 'number' ? `, min RTT ${result.minRttMs.toFixed(1)} ms` : '';
    const ended = {
      plateau: 'goodput stopped growing',
      maxMs: 'its time limit, still in slow start: not used',
      stream: "QEMU's stream, still in slow start: not used",
    }[result.endedBy];
    this.probe =
      `probe: ${mbit} Mbit/s over ${result.connections} connections in ${Math.round(result.durationMs)} ms` +
      `${rtt} (ended by ${ended})`;
  }

  probeFailed(reason: string): void {
    this.probe = `probe failed (${reason}); steered from the transfer's samples`;
  }

  /** The probe's line of the basis, once one ran. */
  get probeNote(): string | undefined {
    return this.probe;
  }

  /** How fast the pipeline took QEMU's stream over the interval (it counts only while QEMU sent). */
  private noteDrain(fromQemu: number, atS: number): void {
    const mark = this.drainMark;
    this.drainMark = { fromQemu, atS };
    if (mark === undefined || atS <= mark.atS) return;
    this.recentDrain.push(Math.max(0, fromQemu - mark.fromQemu) / (atS - mark.atS));
    if (this.recentDrain.length > PEAK_WINDOW) this.recentDrain.shift();
  }

  /** The reduction over the stream since the last reading with enough wire bytes in it. */
  private noteReduction(counters: SourceCounters): void {
    const mark = this.reductionMark;
    this.reductionMark ??= { fromQemu: counters.bytesFromQemu, wire: counters.wireBytes };
    if (mark === undefined) return;
    const wire = counters.wireBytes - mark.wire;
    if (wire < MIN_REDUCTION_WIRE_BYTES) return;
    this.recentReduction = Math.max(1, (counters.bytesFromQemu - mark.fromQemu) / wire);
    this.reductionMark = { fromQemu: counters.bytesFromQemu, wire: counters.wireBytes };
  }

  /** Raw stream bytes per wire byte so far (dedup and compression together); 1 before any. */
  private reduction(counters: SourceCounters): number {
    return counters.wireBytes > 0 && counters.bytesFromQemu > 0
      ? counters.bytesFromQemu / counters.wireBytes
      : 1;
  }

  /**
   * The max-bandwidth QEMU should get now, when it should change; undefined to leave it. While the
   * path is the bottleneck (the send buffer full) it is the prediction × the reduction × 1.15;
   * while QEMU's cap is (the buffer far from full), it doubles each interval, as slow start does,
   * until the path pushes back.
   */
  retarget(counters: SourceCounters): number | undefined {
    if (!this.adjustable || this.path === undefined || this.switchover) return undefined;
    const predicted = this.path.estimate().bandwidthBytesPerSec;
    const fromPrediction =
      predicted === undefined ? undefined : Math.round(predicted * this.reduction(counters) * HEADROOM);
    let target: number;
    if (this.lastSample?.appLimited) target = Math.max(this.maxBandwidth * 2, fromPrediction ?? 0);
    else if (fromPrediction !== undefined) target = fromPrediction;
    else return undefined;
    target = Math.min(MAX_MAX_BANDWIDTH, Math.max(MIN_MAX_BANDWIDTH, target));
    if (Math.abs(target - this.maxBandwidth) <= this.maxBandwidth * HYSTERESIS) return undefined;
    this.maxBandwidth = target;
    return target;
  }

  /**
   * For a QEMU that takes a switchover bandwidth: from now on its stop decision is aimed with it
   * (`reswitchover`), and its rate is left to the send buffer's backpressure, so a stretch of RAM
   * that compresses well is not held to the average reduction's rate. Returns the max-bandwidth to
   * set, or undefined where the operator fixed it (then nothing changes).
   */
  useSwitchoverBandwidth(): number | undefined {
    if (!this.adjustable) return undefined;
    this.switchover = true;
    this.maxBandwidth = MAX_MAX_BANDWIDTH;
    return MAX_MAX_BANDWIDTH;
  }

  /**
   * QEMU's switchover bandwidth now, when it should change by more than the hysteresis: PBA's
   * prediction times the reduction of the stream lately (never the whole run's, which zero pages
   * and text inflate: the last stop-and-copy is dirtied pages), at least 1×; and never more than
   * the pipeline took QEMU's stream at lately (the peak of the last intervals), since where the
   * encoder rather than the path is the bottleneck (a fast link, slow CPUs) the path's rate says
   * nothing of how fast what is left will cross.
   */
  reswitchover(): number | undefined {
    if (!this.switchover) return undefined;
    const predicted = this.path?.estimate().bandwidthBytesPerSec;
    if (predicted === undefined || predicted <= 0) return undefined;
    const fromPath = predicted * (this.recentReduction ?? 1);
    const drained = this.recentDrain.length > 0 ? Math.max(...this.recentDrain) : Number.POSITIVE_INFINITY;
    const target = Math.max(
      MIN_MAX_BANDWIDTH,
      Math.round(Math.min(fromPath, drained > 0 ? drained : fromPath)),
    );
    const current = this.switchoverBandwidth;
    if (current !== undefined && Math.abs(target - current) <= current * HYSTERESIS) return undefined;
    this.switchoverBandwidth = target;
    return target;
  }

  /**
   * Time left: QEMU's remaining RAM at the wire bytes per RAM byte of the last seconds, plus
   * what is still in the pipeline, at PBA's predicted rate. The window's mix, not the run's: QEMU
   * counts a zero page as 4 KiB of RAM though it costs a few bytes on the wire, so the run's ratio
   * after a stretch of zero pages says nothing of the random pages after it. Before the window has
   * enough RAM behind it, the last window that had stands in (QEMU blocked on a full pipeline), and
   * before any, the run's reduction of QEMU's stream.
   */
  etaMs(counters: SourceCounters, remainingBytes: number): number | undefined {
    const predicted = this.path?.estimate().bandwidthBytesPerSec;
    if (predicted === undefined || predicted <= 0) return undefined;
    const backlog = counters.transfer
      ? Math.max(0, counters.transfer.bytesWritten - counters.transfer.bytesAcked)
      : 0;
    const wirePerRam = this.windowWirePerRam() ?? this.lastWirePerRam ?? 1 / this.reduction(counters);
    return Math.round(((remainingBytes * wirePerRam + backlog) * 1000) / predicted);
  }

  /** Wire bytes per byte of RAM QEMU covered over the window, once it holds enough RAM. */
  private windowWirePerRam(): number | undefined {
    const { ram, wire } = windowMix(this.etaReadings);
    if (ram < MIN_ETA_WINDOW_RAM) return undefined;
    this.lastWirePerRam = wire / ram;
    return this.lastWirePerRam;
  }

  /** What the record shows. */
  report(): MigrationPath {
    const estimate = this.path?.estimate();
    const s = this.lastSample;
    const round = (x: number | undefined) => (x === undefined ? undefined : Math.round(x));
    const tenths = (x: number | undefined) => (x === undefined ? undefined : Math.round(x * 10) / 10);
    const fields = {
      measuredBytesPerSec: round(s?.goodputBytesPerSec),
      measuredRttMs: tenths(s?.rttMs ?? estimate?.rttMs),
      predictedBytesPerSec: round(estimate?.bandwidthBytesPerSec),
      lowerBytesPerSec: round(estimate?.lowerBandwidthBytesPerSec),
    };
    const maxBandwidthMiB = (this.maxBandwidth / 1024 / 1024).toFixed(1);
    const switchoverMiB = ((this.switchoverBandwidth ?? 0) / 1024 / 1024).toFixed(1);
    const changes = [
      this.probe,
      this.switchover
        ? `QEMU max-bandwidth uncapped (the send buffer paces it); its stop decision assumes ${
            this.switchoverBandwidth === undefined
              ? 'its own rate until PBA predicts'
              : `${switchoverMiB} MiB/s, PBA's prediction × the recent reduction`
          }`
        : this.maxBandwidth === this.chosen.maxBandwidthBytesPerSec
          ? undefined
          : `QEMU max-bandwidth now ${maxBandwidthMiB} MiB/s from PBA's prediction × the reduction so far`,
      this.bufferBytes === this.chosen.bufferBytes
        ? undefined
        : `send buffer now ${(this.bufferBytes / 1024 / 1024).toFixed(1)} MiB, ${
            this.converging ? CONVERGING_BUFFER_BDPS : BULK_BUFFER_BDPS
          } bandwidth-delay products ${this.converging ? 'as QEMU converges' : "in QEMU's first pass"}`,
      this.downtimeLimit === this.chosen.downtimeLimitMs
        ? undefined
        : `downtime-limit now ${this.downtimeLimit} ms, what a ${PAUSE_BUDGET_MS} ms pause leaves after half the RTT and the buffer's drain`,
      this.codecChanges === 0 || this.codec === undefined
        ? undefined
        : `codec now ${this.codec} after ${this.codecChanges} change${this.codecChanges === 1 ? '' : 's'}: HDE steps down while its encoder, not the link, is the bottleneck`,
    ].filter((c) => c !== undefined);
    const basis = [this.chosen.basis, ...changes].join('; ');
    return {
      ...Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined && Number.isFinite(v))),
      samples: estimate?.samples ?? 0,
      streams: this.chosen.streams,
      zstdLevel: this.chosen.zstdLevel,
      maxBandwidthBytesPerSec: this.maxBandwidth,
      ...(this.switchoverBandwidth === undefined
        ? {}
        : { switchoverBandwidthBytesPerSec: this.switchoverBandwidth }),
      downtimeLimitMs: this.downtimeLimit,
      bufferBytes: this.bufferBytes,
      ...(this.codec === undefined ? {} : { codec: this.codec }),
      basis,
    };
  }
}
