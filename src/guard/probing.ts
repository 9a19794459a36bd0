/**
 * Probing defence for a service that answers the guard's verdicts (issue 17, item 5): a black-box
 * query attack (score-based like SimBA, Guo et al. ICML 2019, or decision-based like HopSkipJump,
 * Chen et al. IEEE S&P 2020) needs hundreds to thousands of queries, almost all of them small
 * variations of one input. Two per-client rules, both pure (the clock is injected, nothing is
 * written anywhere):
 *
 *   - a query budget: a token bucket (capacity, refill per second); an empty bucket refuses;
 *   - near-duplicate detection: each input is reduced to a coarse sketch (the means of at most
 *     SKETCH_SIZE equal runs of its values, in input order), and the last `history` sketches of
 *     the client are kept; when at least `neighbours` of them lie within `tolerance` (mean absolute
 *     difference per sketch value, in the input's own units) without being identical, the client is
 *     probing. Exact repeats do not count: they return the same answer and teach nothing, and
 *     legitimate clients send them (retries, a still camera); nor are they stored twice, so
 *     retrying a refused query does not push the near-duplicates out of the history.
 *
 * A client whose budget is spent is refused until its next token; one caught probing is refused
 * for `blockMs`. At most one refusal per client in any `blockMs` is marked `record`, so that the
 * caller journals an episode once, not every refused request. Clients are kept
 * in least-recently-seen order, at most `maxClients` (the oldest forgotten first).
 *
 * The sketches are coarse means, kept in memory only; they are derived from the inputs and go when
 * the client is forgotten or the process ends.
 */

/** Values per sketch (at most): an image becomes 64 means of consecutive pixels. */
export const SKETCH_SIZE = 64;

export interface ProbingSettings {
  budget: { capacity: number; refillPerSecond: number };
  nearDuplicates: { enabled: boolean; history: number; tolerance: number; neighbours: number };
  /** How long a client caught by either rule is refused, ms. */
  blockMs: number;
  maxClients: number;
}

export type ProbingReason = 'budget' | 'near-duplicates';

export type ProbingDecision =
  | { allowed: true }
  | {
      allowed: false;
      reason: ProbingReason;
      /** Seconds until the client may query again. */
      retryAfterS: number;
      /** The first refusal of this client in `blockMs`: record it (once per episode). */
      record: boolean;
      /** Near-duplicate neighbours of the input that tripped the detector (0 for the budget). */
      neighbours: number;
    };

interface ClientState {
  tokens: number;
  refilledAt: number;
  sketches: Float64Array;
  /** Sketches stored so far (up to history), and where the next one goes. */
  stored: number;
  next: number;
  blockedUntil: number;
  blockReason: ProbingReason;
  /** Until when a refusal is not recorded again. */
  recordedUntil: number;
}

export class ProbingMonitor {
  private readonly clients = new Map<string, ClientState>();

  constructor(
    readonly settings: ProbingSettings,
    private readonly now: () => number = Date.now,
  ) {}

  /** Clients currently tracked. */
  get size(): number {
    return this.clients.size;
  }

  /** Clients refused right now (blocked). */
  blocked(): number {
    const t = this.now();
    let n = 0;
    for (const c of this.clients.values()) if (c.blockedUntil > t) n++;
    return n;
  }

  /** Before a query is read: refused while blocked, or when the budget is spent (one token per query). */
  admit(client: string): ProbingDecision {
    const t = this.now();
    const c = this.state(client, t);
    if (c.blockedUntil > t) return this.refusal(c, c.blockReason, t, 0);
    const { capacity, refillPerSecond } = this.settings.budget;
    c.tokens = Math.min(capacity, c.tokens + ((t - c.refilledAt) / 1000) * refillPerSecond);
    c.refilledAt = t;
    if (c.tokens < 1) return this.block(c, 'budget', t + ((1 - c.tokens) / refillPerSecond) * 1000, t, 0);
    c.tokens -= 1;
    return { allowed: true };
  }

  /** After the query is decoded: its sketch against the client's recent ones. */
  observe(client: string, values: ArrayLike<number | bigint>): ProbingDecision {
    const nd = this.settings.nearDuplicates;
    if (!nd.enabled) return { allowed: true };
    const t = this.now();
    const c = this.state(client, t);
    const s = sketch(values);
    let near = 0;
    let seen = false;
    for (let k = 0; k < c.stored; k++) {
      const d = sketchDistance(c.sketches, k * SKETCH_SIZE, s);
      if (d === 0) seen = true;
      else if (d <= nd.tolerance) near++;
    }
    // An input already in the history is not stored again: repeats (a retry after a refusal) would
    // otherwise push the near-duplicates out and let the search go on.
    if (!seen) {
      c.sketches.set(s, c.next * SKETCH_SIZE);
      c.next = (c.next + 1) % nd.history;
      c.stored = Math.min(nd.history, c.stored + 1);
    }
    if (near >= nd.neighbours) return this.block(c, 'near-duplicates', t + this.settings.blockMs, t, near);
    return { allowed: true };
  }

  private block(c: ClientState, reason: ProbingReason, until: number, t: number, neighbours: number): ProbingDecision {
    c.blockedUntil = Math.max(c.blockedUntil, until);
    c.blockReason = reason;
    return this.refusal(c, reason, t, neighbours);
  }

  private refusal(c: ClientState, reason: ProbingReason, t: number, neighbours: number): ProbingDecision {
    const record = t >= c.recordedUntil;
    if (record) c.recordedUntil = t + this.settings.blockMs;
    const retryAfterS = Math.max(1, Math.ceil((c.blockedUntil - t) / 1000));
    return { allowed: false, reason, retryAfterS, record, neighbours };
  }

  /** The client's state, marked as the most recently seen; the least recently seen goes beyond maxClients. */
  private state(client: string, t: number): ClientState {
    let c = this.clients.get(client);
    if (c) {
      this.clients.delete(client);
    } else {
      c = {
        tokens: this.settings.budget.capacity,
        refilledAt: t,
        sketches: new Float64Array(this.settings.nearDuplicates.history * SKETCH_SIZE),
        stored: 0,
        next: 0,
        blockedUntil: 0,
        blockReason: 'budget',
        recordedUntil: 0,
      };
      if (this.clients.size >= this.settings.maxClients) {
        const oldest = this.clients.keys().next().value;
        if (oldest !== undefined) this.clients.delete(oldest);
      }
    }
    this.clients.set(client, c);
    return c;
  }
}

/**
 * The sketch of an input: the means of SKETCH_SIZE runs of its values (run i covers values
 * floor(i n / S) .. floor((i + 1) n / S) - 1); fewer values than S repeat into several runs.
 * Non-finite values count as 0.
 */
export function sketch(values: ArrayLike<number | bigint>): Float64Array {
  const n = values.length;
  const out = new Float64Array(SKETCH_SIZE);
  if (n === 0) return out;
  for (let i = 0; i < SKETCH_SIZE; i++) {
    const from = Math.floor((i * n) / SKETCH_SIZE);
    const to = Math.max(from + 1, Math.floor(((i + 1) * n) / SKETCH_SIZE));
    let sum = 0;
    for (let j = from; j < to; j++) {
      const v = Number(values[j]!);
      if (Number.isFinite(v)) sum += v;
    }
    out[i] = sum / (to - from);
  }
  return out;
}

/** Mean absolute difference between the stored sketch at `offset` and `s`. */
function sketchDistance(stored: Float64Array, offset: number, s: Float64Array): number {
  let d = 0;
  for (let i = 0; i < SKETCH_SIZE; i++) d += Math.abs(stored[offset + i]! - s[i]!);
  return d / SKETCH_SIZE;
}
