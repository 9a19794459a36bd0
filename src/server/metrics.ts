/** Prometheus metrics of one server instance (its own registry, so several servers can share a process). */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Store } from '../store/index.ts';

export interface ServerMetrics {
  httpRequests: Counter<'method' | 'route' | 'status'>;
  httpDuration: Histogram<'method' | 'route'>;
  enrollments: Counter<'stage' | 'result'>;
  authRefusals: Counter<'reason'>;
  /** Security events the audit log could not take after its retries (events.ts). */
  auditEventFailures: Counter<'type' | 'policy'>;
  /** Refused enrollment requests (anonymous), by stage and reason; summarised in the log, not one entry each. */
  enrollmentFailures: Counter<'stage' | 'reason'>;
  /** Connections closed before the TLS handshake (one address beyond its cap, or waited too long for its rate). */
  connectionsRefused: Counter<'reason'>;
  /** Connections accepted and waiting, unread, for their address's connection rate. */
  connectionsWaiting: Gauge;
}

export function createMetrics(store: Store): { registry: Registry; metrics: ServerMetrics } {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'edgeguard_' });
  const metrics: ServerMetrics = {
    httpRequests: new Counter({
      name: 'edgeguard_http_requests_total',
      help: 'HTTP requests by route and status',
      labelNames: ['method', 'route', 'status'],
      registers: [registry],
    }),
    httpDuration: new Histogram({
      name: 'edgeguard_http_request_duration_seconds',
      help: 'HTTP request duration',
      labelNames: ['method', 'route'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    enrollments: new Counter({
      name: 'edgeguard_enrollments_total',
      help: 'Enrollment steps by outcome',
      labelNames: ['stage', 'result'],
      registers: [registry],
    }),
    authRefusals: new Counter({
      name: 'edgeguard_auth_refusals_total',
      help: 'Requests refused by client-certificate checks',
      labelNames: ['reason'],
      registers: [registry],
    }),
    auditEventFailures: new Counter({
      name: 'edgeguard_audit_event_failures_total',
      help: 'Security events that could not be appended to the audit log, by event type and failure policy',
      labelNames: ['type', 'policy'],
      registers: [registry],
    }),
    enrollmentFailures: new Counter({
      name: 'edgeguard_enrollment_failures_total',
      help: 'Refused enrollment requests by stage and reason (the audit log gets one summary per interval)',
      labelNames: ['stage', 'reason'],
      registers: [registry],
    }),
    connectionsRefused: new Counter({
      name: 'edgeguard_connections_refused_total',
      help: 'Connections closed before the TLS handshake, by reason (per_address: the remote address holds its cap; rate: it opens new connections faster than its rate, and one waited longer than limits.connectionWaitMs)',
      labelNames: ['reason'],
      registers: [registry],
    }),
    connectionsWaiting: new Gauge({
      name: 'edgeguard_connections_waiting',
      help: "Connections accepted and waiting, unread, for their address's connection rate (limits.connectionRatePerAddress)",
      registers: [registry],
    }),
  };
  new Gauge({
    name: 'edgeguard_devices',
    help: 'Devices by status',
    labelNames: ['status'],
    registers: [registry],
    async collect() {
      const devices = await store.listDevices();
      const counts = { pending: 0, approved: 0, revoked: 0, tampered: 0 };
      for (const d of devices) counts[d.status]++;
      for (const [status, n] of Object.entries(counts)) this.set({ status }, n);
    },
  });
  return { registry, metrics };
}
