/**
 * Group commit: appends from one process are queued and committed in batches, so a burst of
 * appends costs one transaction (and one fsync) per batch rather than per entry. While one batch
 * commits, the next one fills; a lone append waits at most `maxDelayMs` for company.
 */
export interface AppendResult {
  index: number;
}

interface Pending {
  leaf: Buffer;
  resolve: (r: AppendResult) => void;
  reject: (e: unknown) => void;
}

export class AppendSequencer {
  private pending: Pending[] = [];
  private flushing: Promise<void> | undefined;
  private delayTimer: NodeJS.Timeout | undefined;

  constructor(
    /** Commits a batch of leaves in order; resolves with the index of the first. */
    private readonly commit: (leaves: Buffer[]) => Promise<number>,
    private readonly maxBatch: number,
    private readonly maxDelayMs: number,
  ) {}

  enqueue(leaf: Buffer): Promise<AppendResult> {
    return new Promise<AppendResult>((resolve, reject) => {
      this.pending.push({ leaf, resolve, reject });
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
    this.flushing = this.commit(batch.map((p) => p.leaf))
      .then(
        (first) => batch.forEach((p, i) => p.resolve({ index: first + i })),
        (e: unknown) => batch.forEach((p) => p.reject(e)),
      )
      .finally(() => {
        this.flushing = undefined;
        if (this.pending.length > 0) this.startFlush();
      });
  }
}
