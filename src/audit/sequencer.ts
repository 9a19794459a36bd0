/**
 * Group commit: appends from one process are queued and committed in batches, so a burst of
 * appends costs one transaction (and one fsync) per batch rather than per entry. While one batch
 * commits, the next one fills; a lone append waits at most `maxDelayMs` for company. An append may
 * bring the store write that its event records (`work`): it runs in the batch's transaction, so
 * the record and its audit entry share one commit; a failing `work` drops its own entry only.
 */
import type { StoreWork } from './storage.ts';

export interface AppendResult {
  index: number;
}

/** One entry of a batch, and the store write committed with it. */
export interface AppendUnit {
  leaf: Buffer;
  work?: StoreWork | undefined;
}

/** Per unit of a batch: its index, or why its own work failed (its entry was not appended). */
export type UnitOutcome = AppendResult | { error: unknown };

interface Pending extends AppendUnit {
  resolve: (r: AppendResult) => void;
  reject: (e: unknown) => void;
}

export class AppendSequencer {
  private pending: Pending[] = [];
  private flushing: Promise<void> | undefined;
  private delayTimer: NodeJS.Timeout | undefined;

  constructor(
    /** Commits a batch in order, in one transaction; resolves with each unit's outcome. */
    private readonly commit: (units: AppendUnit[]) => Promise<UnitOutcome[]>,
    private readonly maxBatch: number,
    private readonly maxDelayMs: number,
  ) {}

  enqueue(leaf: Buffer, work?: StoreWork): Promise<AppendResult> {
    return new Promise<AppendResult>((resolve, reject) => {
      this.pending.push({ leaf, work, resolve, reject });
      this.schedule();
    });
  }

  /** Wait until everything queued so far is committed (or failed). */
  async flush(): Promise<void> {
    while (this.pending.length > 0 || this.flushing) {
      if (!this.flushing) this.startFlush();
      await this.flushing;
    }
  }

  private schedule(): void {
    if (this.flushing) return;
    if (this.pending.length >= this.maxBatch) {
      this.startFlush();
    } else if (!this.delayTimer) {
      this.delayTimer = setTimeout(() => {
        this.delayTimer = undefined;
        this.startFlush();
      }, this.maxDelayMs);
    }
  }

  private startFlush(): void {
    if (this.flushing) return;
    if (this.delayTimer) {
      clearTimeout(this.delayTimer);
      this.delayTimer = undefined;
    }
    const batch = this.pending.splice(0, this.maxBatch);
    if (batch.length === 0) return;
    this.flushing = this.commit(batch.map((p) => ({ leaf: p.leaf, work: p.work })))
      .then(
        (outcomes) =>
          batch.forEach((p, i) => {
            const o = outcomes[i]!;
            if ('error' in o) p.reject(o.error);
            else p.resolve(o);
          }),
        (e: unknown) => batch.forEach((p) => p.reject(e)),
      )
      .finally(() => {
        this.flushing = undefined;
        if (this.pending.length > 0) this.startFlush();
      });
  }
}
