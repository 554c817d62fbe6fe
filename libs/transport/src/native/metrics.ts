/** Prometheus metrics of AMST (`dwcp_amst_*`), registered once per registry. */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export class AmstMetrics {
  readonly bytesSent: Counter;
  readonly bytesReceived: Counter;
  readonly framesResent: Counter;
  readonly framesRejected: Counter;
  readonly connectionsFailed: Counter;
  readonly connectionsCorrupted: Counter;
  readonly connections: Gauge;
  readonly streamsTarget: Gauge;
  readonly rtt: Histogram;
  readonly goodput: Gauge;
  readonly transfers: Counter<'direction' | 'result'>;
  readonly duration: Histogram;

  constructor(registry: Registry) {
    const registers = [registry];
    this.bytesSent = new Counter({
      name: 'dwcp_amst_sent_bytes_total',
      help: 'Stream bytes delivered to receivers (acknowledged)',
      registers,
    });
    this.bytesReceived = new Counter({
      name: 'dwcp_amst_received_bytes_total',
      help: 'Stream bytes received in order',
      registers,
    });
    this.framesResent = new Counter({
      name: 'dwcp_amst_frames_resent_total',
      help: 'Frames sent again after their connection failed or stalled',
      registers,
    });
    this.framesRejected = new Counter({
      name: 'dwcp_amst_frames_rejected_total',
      help: 'Frames a receiver dropped for a wrong CRC (damaged above TLS) and asked for again; none reached QEMU',
      registers,
    });
    this.connectionsFailed = new Counter({
      name: 'dwcp_amst_connections_failed_total',
      help: 'Sender connections lost mid-transfer (reset, stall, a damaged TLS record); their frames went out on the others',
      registers,
    });
    this.connectionsCorrupted = new Counter({
      name: 'dwcp_amst_connections_corrupted_total',
      help: 'Receiver connections that died on a TLS record failing its integrity check',
      registers,
    });
    this.connections = new Gauge({
      name: 'dwcp_amst_connections',
      help: 'Open AMST connections of running transfers',
      registers,
    });
    this.streamsTarget = new Gauge({
      name: 'dwcp_amst_streams_target',
      help: 'Connections the stream-count controllers want, summed over running transfers',
      registers,
    });
    this.rtt = new Histogram({
      name: 'dwcp_amst_connection_rtt_seconds',
      help: 'Smoothed frame-to-ack time per connection, sampled at each stats tick',
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5],
      registers,
    });
    this.goodput = new Gauge({
      name: 'dwcp_amst_goodput_bytes_per_second',
      help: 'Delivered bytes per second of running transfers over the last stats tick',
      registers,
    });
    this.transfers = new Counter({
      name: 'dwcp_amst_transfers_total',
      help: 'Finished transfers by direction and result',
      labelNames: ['direction', 'result'],
      registers,
    });
    this.duration = new Histogram({
      name: 'dwcp_amst_transfer_duration_seconds',
      help: 'Wall time of finished transfers',
      buckets: [0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800],
      registers,
    });
  }
}

const byRegistry = new WeakMap<Registry, AmstMetrics>();

/** The metrics of `registry`, created on first use so several transfers share them. */
export function amstMetrics(registry: Registry): AmstMetrics {
  let m = byRegistry.get(registry);
  if (!m) {
    m = new AmstMetrics(registry);
    byRegistry.set(registry, m);
  }
  return m;
}
