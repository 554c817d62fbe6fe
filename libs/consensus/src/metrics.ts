/** Prometheus metrics of ACP (`dwcp_acp_*`), registered once per registry. */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export interface AcpMetrics {
  requests: Counter<'kind' | 'result'>;
  latency: Histogram<'kind'>;
  term: Gauge;
  isLeader: Gauge;
  applied: Gauge;
  leaderChanges: Counter;
  snapshots: Counter;
  tickInterval: Gauge;
  peerRtt: Histogram<'peer'>;
  forwarded: Counter<'result'>;
  rejectedEntries: Counter<'kind'>;
  halted: Gauge;
}

const cache = new WeakMap<Registry, AcpMetrics>();

export function acpMetrics(registry: Registry): AcpMetrics {
  const have = cache.get(registry);
  if (have) return have;
  const registers = [registry];
  const m: AcpMetrics = {
    requests: new Counter({
      name: 'dwcp_acp_requests_total',
      help: 'Proposals, membership changes and linearizable reads started on this node, by result',
      labelNames: ['kind', 'result'],
      registers,
    }),
    latency: new Histogram({
      name: 'dwcp_acp_request_duration_seconds',
      help: 'Time from proposal (or read) to apply on this node',
      labelNames: ['kind'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    }),
    term: new Gauge({ name: 'dwcp_acp_term', help: 'Current Raft term', registers }),
    isLeader: new Gauge({
      name: 'dwcp_acp_is_leader',
      help: '1 while this node is the Raft leader',
      registers,
    }),
    applied: new Gauge({
      name: 'dwcp_acp_applied_index',
      help: 'Last log index applied to the state machine',
      registers,
    }),
    leaderChanges: new Counter({
      name: 'dwcp_acp_leader_changes_total',
      help: 'Leader changes seen by this node',
      registers,
    }),
    snapshots: new Counter({
      name: 'dwcp_acp_snapshots_total',
      help: 'State-machine snapshots taken (log compactions)',
      registers,
    }),
    tickInterval: new Gauge({
      name: 'dwcp_acp_tick_interval_seconds',
      help: 'Current Raft tick (heartbeat) interval, adapted to the p99 peer RTT',
      registers,
    }),
    peerRtt: new Histogram({
      name: 'dwcp_acp_peer_rtt_seconds',
      help: 'Round trip of a Raft message batch to a peer',
      labelNames: ['peer'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers,
    }),
    forwarded: new Counter({
      name: 'dwcp_acp_forwarded_total',
      help: 'Commands forwarded from this follower to the leader, by result',
      labelNames: ['result'],
      registers,
    }),
    rejectedEntries: new Counter({
      name: 'dwcp_acp_rejected_entries_total',
      help: 'Committed entries applied as rejected no-ops because the engine or the state machine could not apply them',
      labelNames: ['kind'],
      registers,
    }),
    halted: new Gauge({
      name: 'dwcp_acp_halted',
      help: '1 once the Raft engine stopped after a failure it cannot recover from in-process (see the log)',
      registers,
    }),
  };
  cache.set(registry, m);
  return m;
}
