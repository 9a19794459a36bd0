/**
 * The agent's concurrency limit: a slot per admitted request, released once its work ends, and
 * `EG_OVERLOADED` (429) when none is free. Requests with a large body (a crowd of near-limit
 * images that pass their signature check and then fail to decode) may take half the slots at most
 * (rounded down, at least one): the rest are kept for small requests (a frame, a tensor), which
 * would otherwise be refused while garbage is being decoded (bench/hostile.ts). With a limit of
 * one, that one slot is for anybody.
 */
import type { Counter, Gauge } from 'prom-client';
import { refusal } from '../errors/index.ts';

export interface Slot {
  released: boolean;
  large: boolean;
  work?: Promise<unknown>;
}

export class Slots {
  inflight = 0;
  private largeInflight = 0;

  constructor(
    private readonly limit: number,
    private readonly overload?: Counter,
    private readonly gauge?: Gauge,
  ) {}

  acquire(large = false): Slot {
    const largeLimit = Math.max(1, Math.floor(this.limit / 2));
    if (this.inflight >= this.limit || (large && this.largeInflight >= largeLimit)) {
      this.overload?.inc();
      throw refusal(
        'EG_OVERLOADED',
        large && this.inflight < this.limit
          ? `the service is at its concurrency limit for large inputs (${largeLimit} of ${this.limit} requests; the rest are kept for small ones); retry shortly.`
          : `the service is at its concurrency limit (${this.limit} requests); retry shortly.`,
      );
    }
    this.inflight++;
    if (large) this.largeInflight++;
    this.gauge?.set(this.inflight);
    return { released: false, large };
  }

  release(slot: Slot): void {
    if (slot.released) return;
    slot.released = true;
    this.inflight--;
    if (slot.large) this.largeInflight--;
    this.gauge?.set(this.inflight);
  }
}
