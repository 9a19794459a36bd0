/**
 * Group commit on both backends: units queued together share one transaction, each caller gets its
 * own result, a failing unit is rolled back alone (the others commit), and nothing resolves before
 * the commit.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { sql, type Kysely } from 'kysely';
import { GroupCommit, type Store } from '../../src/store/index.ts';
import { BACKENDS } from '../helpers/stores.ts';

type Tables = { gc_test: { k: string; v: number } };

for (const backend of BACKENDS) {
  describe(`group commit on ${backend.name}`, () => {
    let store: Store;
    let cleanup: () => Promise<void>;
    let db: Kysely<Tables>;

    before(async () => {
      ({ store, cleanup } = await backend.open());
      db = store.db.withTables<Tables>() as unknown as Kysely<Tables>;
      await sql`create table gc_test (k text primary key, v integer not null)`.execute(db);
    });
    after(async () => {
      await cleanup();
    });

    it('commits concurrent units together and gives each caller its own result', async () => {
      const writes = new GroupCommit(db);
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          writes.run(async (trx) => {
            await trx
              .insertInto('gc_test')
              .values({ k: `a${i}`, v: i })
              .execute();
            return i * 2;
          }),
        ),
      );
      assert.deepEqual(
        results,
        Array.from({ length: 20 }, (_, i) => i * 2),
      );
      const rows = await db.selectFrom('gc_test').select('k').where('k', 'like', 'a%').execute();
      assert.equal(rows.length, 20);
    });

    it('rolls back a failing unit alone: its caller sees the error, the others commit', async () => {
      const writes = new GroupCommit(db);
      const outcomes = await Promise.allSettled([
        writes.run((trx) => trx.insertInto('gc_test').values({ k: 'b1', v: 1 }).execute()),
        writes.run(async (trx) => {
          await trx.insertInto('gc_test').values({ k: 'b2', v: 2 }).execute();
          await trx.insertInto('gc_test').values({ k: 'b1', v: 3 }).execute(); // duplicate key
        }),
        writes.run((trx) => trx.insertInto('gc_test').values({ k: 'b3', v: 3 }).execute()),
      ]);
      assert.deepEqual(
        outcomes.map((o) => o.status),
        ['fulfilled', 'rejected', 'fulfilled'],
      );
      const keys = (await db.selectFrom('gc_test').select('k').where('k', 'like', 'b%').orderBy('k').execute()).map(
        (r) => r.k,
      );
      assert.deepEqual(keys, ['b1', 'b3']);
    });

    it('resolves a unit only once its write is visible outside the transaction', async () => {
      const writes = new GroupCommit(db);
      await writes.run((trx) => trx.insertInto('gc_test').values({ k: 'c1', v: 1 }).execute());
      // A separate read (on PostgreSQL another pooled connection) sees the committed row.
      const row = await db.selectFrom('gc_test').select('v').where('k', '=', 'c1').executeTakeFirst();
      assert.equal(row?.v, 1);
    });
  });
}
