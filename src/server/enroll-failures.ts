/**
 * Failed anonymous enrollments, counted and summarised. Anyone can call the enrollment routes, so
 * one permanent log entry per failure would let any address write ~86,000 entries a day into the
 * audit log. Instead each failure is a metric increment and a count in memory, and at most one
 * `enroll.failures` event per interval records the counts by reason and address (the busiest
 * addresses by name) and the EK hashes of failures that got as far as the EK.
 */
import type { AuditEvents } from './events.ts';
import type { ServerMetrics } from './metrics.ts';

export interface EnrollmentFailure {
  stage: 'nonce' | 'start' | 'finish';
  reason: string;
  address: string;
  ekSha256?: string | undefined;
}

const MAX_LISTED = 64;

export class EnrollmentFailures {
  private since = new Date();
  private total = 0;
  private readonly byReason = new Map<string, number>();
  private readonly byAddress = new Map<string, number>();
  private readonly ekHashes = new Set<string>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly events: AuditEvents,
    private readonly metrics: ServerMetrics,
  ) {}

  record(f: EnrollmentFailure): void {
    this.metrics.enrollmentFailures.inc({ stage: f.stage, reason: f.reason });
    this.total += 1;
    bump(this.byReason, `${f.stage}:${f.reason}`);
    bump(this.byAddress, f.address);
    if (f.ekSha256 !== undefined && this.ekHashes.size < MAX_LISTED) this.ekHashes.add(f.ekSha256);
  }

  /** Summarise every `intervalMs` (only when something failed). */
  start(intervalMs: number): void {
    this.timer = setInterval(() => void this.flush(), intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }

  /** Write the summary of what failed since the last one, and start counting afresh. */
  async flush(): Promise<void> {
    if (this.total === 0) return;
    const addresses = top(this.byAddress);
    const summary = {
      since: this.since.toISOString(),
      total: this.total,
      byReason: top(this.byReason).map(([reason, count]) => ({ reason, count })),
      byAddress: addresses.map(([address, count]) => ({ address, count })),
      otherAddresses: this.byAddress.size - addresses.length,
      ekSha256: [...this.ekHashes],
    };
    this.since = new Date();
    this.total = 0;
    this.byReason.clear();
    this.byAddress.clear();
    this.ekHashes.clear();
    await this.events.emit('enroll.failures', {
      actor: { kind: 'server', id: 'enrollment' },
      outcome: 'denied',
      details: summary,
    });
  }
}

function bump(counts: Map<string, number>, key: string): void {
  counts.set(key, (counts.get(key) ?? 0) + 1);
}

function top(counts: Map<string, number>): Array<[string, number]> {
  return [...counts].sort((a, b) => b[1] - a[1]).slice(0, MAX_LISTED);
}
