/** Picks a migration's knobs (AMST connections, zstd level, QEMU's rate cap and downtime budget) from the measured path. */

const MiB = 1024 * 1024;

/** What is known about the path to the destination; either may be missing (not measured yet). */
export interface PathMeasurement {
  bandwidthBytesPerSec?: number;
  rttMs?: number;
}

export interface MigrationParameterChoice {
  /** AMST connections. */
  streams: number;
  zstdLevel: number;
  /** QEMU `max-bandwidth`, bytes of QEMU's stream per second. */
  maxBandwidthBytesPerSec: number;
  /** QEMU `downtime-limit`. */
  downtimeLimitMs: number;
  /** AMST's send buffer: encoded bytes taken from QEMU and not yet acknowledged. */
  bufferBytes: number;
  /** Why, in one line, for the log. */
  basis: string;
}

/** QEMU's own defaults, kept when nothing was measured. */
export const QEMU_DEFAULT_MAX_BANDWIDTH = 128 * MiB;
export const QEMU_DEFAULT_DOWNTIME_LIMIT_MS = 300;
const DEFAULT_STREAMS = 4;
const MAX_STREAMS = 16;
/** What one TCP connection can keep in flight (Linux's default tcp_rmem maximum is 6 MiB). */
const WINDOW_PER_STREAM = 4 * MiB;
/**
 * HDE's zstd-1 ratio on guest memory (2.5× measured on the test guest, docs/migration.md), taken
 * lower: QEMU's cap counts raw stream bytes, and the link carries them compressed.
 */
const ASSUMED_COMPRESSION = 2;
const MIN_MAX_BANDWIDTH = MiB;
/**
 * The guest's real pause DWCP aims at. QEMU stops the guest once what is left, at the rate it
 * measured, fits in `downtime-limit`; on top of that come what the pipeline still holds and half
 * an RTT, so the limit is what remains of this budget.
 */
export const PAUSE_BUDGET_MS = 150;
/** QEMU refuses more than 2000 s; past a few seconds a migration should rather fail and be retried. */
const MAX_DOWNTIME_LIMIT_MS = 5000;
const MIN_DOWNTIME_LIMIT_MS = 20;

/** The pipeline's own default, when the path's rate is unknown. */
export const DEFAULT_BUFFER_BYTES = 8 * MiB;
const MIN_BUFFER_BYTES = 2 * MiB;
const MAX_BUFFER_BYTES = 64 * MiB;
/**
 * Scheduling slack beyond the RTT that the buffer also covers, so a fast path is not starved: the
 * RTT itself within 5..20 ms (a fixed 20 ms made a datacenter buffer ten times its BDP, all of it
 * to cross during the pause at the encoder's pace).
 */
const slackMs = (rttMs: number | undefined): number => Math.min(20, Math.max(5, rttMs ?? 20));

/**
 * How many bandwidth-delay products the send buffer holds while QEMU's first pass streams the
 * bulk of RAM. Frames are acknowledged when whole, and on a lossy path a lost segment holds every
 * frame behind it on its connection for another round trip, so filling the link takes about two
 * BDPs in flight; with less the buffer, not the path, sets the rate, and a buffer sized from that
 * rate shrinks further (measured: 1.5 BDPs on `internet` gave 53 % link use). It is not more,
 * because a guest that dirties almost nothing can be stopped at the end of the first pass, with
 * all of it still to cross (2.5 BDPs: about 300 ms on `internet`).
 */
export const BULK_BUFFER_BDPS = 2.5;
/**
 * Once QEMU iterates over dirtied pages: the guest stops with this much still in flight, all of
 * which crosses during the pause, so the buffer is kept near one BDP with a little margin.
 */
export const CONVERGING_BUFFER_BDPS = 1.5;

/**
 * AMST's send buffer for a path: `bdps` × what must be in flight to fill it (rate × (RTT + a
 * little slack)). Everything in it is invisible to QEMU's downtime estimate and crosses the link
 * after QEMU stopped the guest, so it stays a small multiple of the bandwidth-delay product.
 */
export function bufferBytesFor(
  bytesPerSec: number | undefined,
  rttMs: number | undefined,
  bdps = CONVERGING_BUFFER_BDPS,
): number {
  if (bytesPerSec === undefined || !Number.isFinite(bytesPerSec) || bytesPerSec <= 0)
    return DEFAULT_BUFFER_BYTES;
  const seconds = ((rttMs ?? 0) + slackMs(rttMs)) / 1000;
  return Math.round(clamp(bytesPerSec * seconds * bdps, MIN_BUFFER_BYTES, MAX_BUFFER_BYTES));
}

/**
 * QEMU's `downtime-limit` for a pause of PAUSE_BUDGET_MS: the budget less half the RTT and the
 * time the send buffer takes to drain at the path's rate, never above QEMU's own 300 ms default
 * nor under 20 ms. A larger limit lets QEMU stop the guest with more left to send (on a fast path,
 * at once: the whole RAM then crosses during the pause).
 */
export function downtimeLimitFor(
  rttMs: number | undefined,
  bufferBytes: number,
  bytesPerSec: number | undefined,
): number {
  const drainMs = bytesPerSec !== undefined && bytesPerSec > 0 ? (bufferBytes * 1000) / bytesPerSec : 0;
  return Math.round(
    clamp(
      PAUSE_BUDGET_MS - (rttMs ?? 0) / 2 - drainMs,
      MIN_DOWNTIME_LIMIT_MS,
      QEMU_DEFAULT_DOWNTIME_LIMIT_MS,
    ),
  );
}

const clamp = (x: number, lo: number, hi: number): number => Math.min(hi, Math.max(lo, x));
const usable = (x: number | undefined): x is number => x !== undefined && Number.isFinite(x) && x > 0;

/**
 * Pure. Connections cover the bandwidth-delay product at WINDOW_PER_STREAM each; zstd spends more
 * CPU only where the link, not one encoder thread, is the bottleneck; QEMU's cap is the link rate
 * times the expected compression (so the pipeline's buffers fill no faster than the link drains
 * them, and QEMU's own rate estimate stays honest); the downtime budget grows with the RTT because
 * the last stop-and-copy crosses the path too.
 */
export function chooseParameters(measured: PathMeasurement = {}): MigrationParameterChoice {
  const bw = usable(measured.bandwidthBytesPerSec) ? measured.bandwidthBytesPerSec : undefined;
  const rtt = usable(measured.rttMs) ? measured.rttMs : undefined;

  const streams =
    bw !== undefined && rtt !== undefined
      ? clamp(Math.ceil((bw * rtt) / 1000 / WINDOW_PER_STREAM), 2, MAX_STREAMS)
      : DEFAULT_STREAMS;
  const zstdLevel = bw === undefined || bw >= 100 * MiB ? 1 : bw >= 10 * MiB ? 3 : 6;
  const maxBandwidthBytesPerSec =
    bw === undefined
      ? QEMU_DEFAULT_MAX_BANDWIDTH
      : Math.max(MIN_MAX_BANDWIDTH, Math.round(bw * ASSUMED_COMPRESSION));
  const bufferBytes = bufferBytesFor(bw, rtt, BULK_BUFFER_BDPS);
  // Once the rate is known, the pause budget sets downtime-limit (downtimeLimitFor); without it the
  // budget cannot be sized, and QEMU's default stays, grown with the RTT since the last
  // stop-and-copy crosses the path too. (This rule was off for a while: destination guests crashed,
  // and the cause turned out to be QEMU 7.2's TCG losing guest writes, docs/migration.md.)
  const downtimeLimitMs =
    bw !== undefined
      ? downtimeLimitFor(rtt, bufferBytesFor(bw, rtt), bw)
      : rtt === undefined
        ? QEMU_DEFAULT_DOWNTIME_LIMIT_MS
        : clamp(
            Math.round(QEMU_DEFAULT_DOWNTIME_LIMIT_MS + 2 * rtt),
            QEMU_DEFAULT_DOWNTIME_LIMIT_MS,
            MAX_DOWNTIME_LIMIT_MS,
          );

  const seen = [
    bw === undefined ? 'bandwidth unknown' : `bandwidth ${(bw / MiB).toFixed(1)} MiB/s`,
    rtt === undefined ? 'RTT unknown' : `RTT ${rtt.toFixed(1)} ms`,
  ].join(', ');
  const basis =
    `${seen} → ${streams} connections, zstd ${zstdLevel}, ` +
    `QEMU max-bandwidth ${(maxBandwidthBytesPerSec / MiB).toFixed(1)} MiB/s, downtime-limit ${downtimeLimitMs} ms, ` +
    `send buffer ${(bufferBytes / MiB).toFixed(1)} MiB`;
  return { streams, zstdLevel, maxBandwidthBytesPerSec, downtimeLimitMs, bufferBytes, basis };
}
