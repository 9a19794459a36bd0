/**
 * The bytes of request bodies the agent reads at once. Small bodies (a camera frame, a tensor of
 * a few thousand numbers) are always admitted: they cost little and are what the service is for.
 * Large ones (above `smallBytes`) share `limitBytes`, reserved by their announced Content-Length
 * (or the body limit when no length is announced) before a byte of the body is read. A large
 * request that does not fit waits, unread, in a first-come queue: its client is held by TCP
 * backpressure instead of being refused into a reconnect loop, so a crowd posting near-limit
 * bodies costs the agent a header parse and an idle socket each, and small requests keep their
 * latency (bench/hostile.ts). A request that waits longer than `waitMs`, or finds `maxWaiting`
 * others already waiting, is refused (429 EG_OVERLOADED, its connection closed).
 */
import { refusal, type EdgeguardError } from '../errors/index.ts';

interface Waiter {
  bytes: number;
  admit: () => void;
}

export interface BodyBudgetOptions {
  limitBytes: number;
  smallBytes: number;
  /** How long a large request may wait for room, ms. */
  waitMs: number;
  /** Large requests waiting at most; more are refused at once. */
  maxWaiting: number;
  onRefused?: () => void;
  /** Called with the number waiting whenever it changes (a metric). */
  onWaiting?: (n: number) => void;
}

export class BodyBudget {
  private inFlight = 0;
  private readonly queue: Waiter[] = [];

  constructor(private readonly o: BodyBudgetOptions) {}

  get bytesInFlight(): number {
    return this.inFlight;
  }

  get waiting(): number {
    return this.queue.length;
  }

  /**
   * Room for a body of `announced` bytes (undefined: not announced, up to `maxBytes`), once there
   * is some; resolves with the release to call when the request is done, or rejects EG_OVERLOADED.
   */
  async reserve(announced: number | undefined, maxBytes: number): Promise<() => void> {
    const bytes = Math.min(announced ?? maxBytes, maxBytes);
    if (bytes <= this.o.smallBytes) return () => undefined;
    if (this.queue.length === 0 && this.inFlight + bytes <= this.o.limitBytes) return this.take(bytes);
    if (this.queue.length >= this.o.maxWaiting) throw this.refused('too many large requests are waiting');
    await new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        bytes,
        admit: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      const timer = setTimeout(() => {
        this.queue.splice(this.queue.indexOf(waiter), 1);
        this.o.onWaiting?.(this.queue.length);
        reject(this.refused(`no room came within ${this.o.waitMs} ms`));
      }, this.o.waitMs);
      this.queue.push(waiter);
      this.o.onWaiting?.(this.queue.length);
    });
    return this.take(bytes, true);
  }

  private take(bytes: number, admitted = false): () => void {
    if (!admitted) this.inFlight += bytes;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.inFlight -= bytes;
      this.admitWaiting();
    };
  }

  /** First come, first served: the head of the queue goes in when it fits. */
  private admitWaiting(): void {
    while (this.queue.length > 0 && this.inFlight + this.queue[0]!.bytes <= this.o.limitBytes) {
      const next = this.queue.shift()!;
      this.inFlight += next.bytes;
      this.o.onWaiting?.(this.queue.length);
      next.admit();
    }
  }

  private refused(why: string): EdgeguardError {
    this.o.onRefused?.();
    return refusal(
      'EG_OVERLOADED',
      `the agent is reading ${this.inFlight} bytes of large request bodies already (limits.bodyBytesInFlight ${this.o.limitBytes}) and ${why}; retry shortly, or send a smaller input.`,
    );
  }
}

/** The Content-Length a request announces, or undefined (chunked, or not a plain number). */
export function announcedLength(header: string | string[] | undefined): number | undefined {
  if (typeof header !== 'string' || !/^\d{1,15}$/.test(header)) return undefined;
  return Number(header);
}
