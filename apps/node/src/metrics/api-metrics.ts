/** The API's Prometheus series. Route labels are route patterns (`/v1/vms/:id`), never raw URLs. */
import { Counter, collectDefaultMetrics, Histogram, type Registry } from 'prom-client';

/** From a cached local read (~1 ms) to a commit through a slow WAN quorum (~10 s). */
export const REQUEST_DURATION_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

export class ApiMetrics {
  readonly requests: Counter<'route' | 'method' | 'code'>;
  readonly duration: Histogram<'route' | 'method'>;

  constructor(registry: Registry) {
    if (registry.getSingleMetric('process_cpu_user_seconds_total') === undefined) {
      collectDefaultMetrics({ register: registry });
    }
    this.requests = new Counter({
      name: 'dwcp_api_requests_total',
      help: 'API requests answered, by route pattern, method and status code',
      labelNames: ['route', 'method', 'code'],
      registers: [registry],
    });
    this.duration = new Histogram({
      name: 'dwcp_api_request_duration_seconds',
      help: 'Time to answer an API request',
      labelNames: ['route', 'method'],
      buckets: REQUEST_DURATION_BUCKETS,
      registers: [registry],
    });
  }

  observe(route: string, method: string, code: number | string, seconds: number): void {
    this.requests.inc({ route, method, code: String(code) });
    this.duration.observe({ route, method }, seconds);
  }
}
