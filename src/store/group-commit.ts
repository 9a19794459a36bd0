/**
 * Group commit for small, independent write transactions on the hot path: the units of work
 * queued while the event loop runs (every request read since the last turn) share one database
 * transaction, so they share one commit, which on SQLite with `synchronous = FULL` is one fsync
 * instead of one each. Each unit runs inside its own SAVEPOINT, so a failing unit is rolled back
 * alone and its caller alone sees the error; every caller's promise settles only after the COMMIT,
 * so a resolved write is as durable as one committed on its own.
 */
import { sql, type Kysely, type Transaction } from 'kysely';

interface Pending<DB> {
  work: (trx: Transaction<DB>) => Promise<unknown>;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

export class GroupCommit<DB> {
  private queue: Array<Pending<DB>> = [];
  private scheduled = false;
  private running = false;

  constructor(
    private readonly db: Kysely<DB>,
    /** Most units in one transaction (bounds the time one commit holds the connection). */
    private readonly maxBatch = 256,
  ) {}

  /** Run `work` in a shared transaction; resolves with its result once that transaction has committed. */
  run<T>(work: (trx: Transaction<DB>) => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ work, resolve: resolve as (v: unknown) => void, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.running) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.flush();
    });
  }

  private async flush(): Promise<void> {
    this.running = true;
    const batch = this.queue.splice(0, this.maxBatch);
    try {
      const outcomes = await this.db.transaction().execute(async (trx) => {
        const out: Outcome[] = [];
        for (const item of batch) out.push(await unit(trx, item.work));
        return out;
      });
      outcomes.forEach((o, i) => (o.ok ? batch[i]!.resolve(o.value) : batch[i]!.reject(o.error)));
    } catch (e) {
      for (const item of batch) item.reject(e);
    } finally {
      this.running = false;
      if (this.queue.length > 0) this.schedule();
    }
  }
}

/** One unit inside its savepoint: released when it succeeds, rolled back alone when it fails. */
async function unit<DB>(trx: Transaction<DB>, work: (trx: Transaction<DB>) => Promise<unknown>): Promise<Outcome> {
  await sql`savepoint group_commit_unit`.execute(trx);
  try {
    const value = await work(trx);
    await sql`release savepoint group_commit_unit`.execute(trx);
    return { ok: true, value };
  } catch (error) {
    await sql`rollback to savepoint group_commit_unit`.execute(trx);
    await sql`release savepoint group_commit_unit`.execute(trx);
    return { ok: false, error };
  }
}
