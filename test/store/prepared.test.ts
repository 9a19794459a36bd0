/**
 * Statements compiled once per handle (src/store/prepared.ts) give the rows the same statement
 * built anew gives, for every argument, concurrent runs included, on SQLite and PostgreSQL; a
 * statement that would put an argument into its SQL text is refused at its first run.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { preparedQuery, type Store, type StoreDb } from '../../src/store/index.ts';
import { BACKENDS } from '../helpers/stores.ts';

for (const backend of BACKENDS) {
  describe(`prepared statements on ${backend.name}`, () => {
    let store: Store;
    let cleanup: () => Promise<void>;
    const serials: string[] = [];

    before(async () => {
      ({ store, cleanup } = await backend.open());
      const t = Date.now();
      for (let i = 0; i < 6; i++) {
        const serial = `ab${randomBytes(6).toString('hex')}`;
        serials.push(serial);
        await store.recordCertificate({
          serial,
          device_id: null,
          role: 'admin',
          subject: `subject ${i}`,
          not_before: new Date(t).toISOString(),
          not_after: new Date(t + 1e6).toISOString(),
          pem: `pem ${i}`,
        });
      }
      await store.revokeCertificate(serials[1]!);
    });
    after(async () => cleanup());

    const build = (db: StoreDb, serial: string, subject: string) =>
      db
        .selectFrom('certificates')
        .select(['serial', 'subject', 'revoked_at'])
        .where((eb) => eb.or([eb('serial', '=', serial), eb('subject', '=', subject)]))
        .where('role', '=', 'admin')
        .orderBy('serial');

    it('gives the rows of the statement built anew, for each argument and in concurrent runs', async () => {
      const prepared = preparedQuery(build);
      const cases: Array<[string, string]> = [
        [serials[0]!, 'subject 3'],
        [serials[1]!, 'nobody'],
        ['00', 'subject 5'],
        ['00', 'nobody'],
        [serials[2]!, 'subject 2'],
        ["' or 1=1 --", 'subject 4'],
      ];
      const expected = await Promise.all(cases.map(([a, b]) => build(store.db, a, b).execute()));
      const got = await Promise.all(cases.map(([a, b]) => prepared(store.db, a, b)));
      assert.deepEqual(got, expected);
      assert.deepEqual(
        got.map((rows) => rows.length),
        [2, 1, 1, 0, 1, 1],
      );
      assert.ok(got[1]![0]!.revoked_at !== null, 'the revoked one is read as revoked');
      // Again, from the compiled form kept for this handle.
      assert.deepEqual(await prepared(store.db, serials[3]!, 'x'), await build(store.db, serials[3]!, 'x').execute());
    });

    it('refuses a statement whose argument would not be a bound parameter', async () => {
      const inlined = preparedQuery((db: StoreDb, serial: string) =>
        db
          .selectFrom('certificates')
          .select('serial')
          .where(sql<boolean>`serial = ${sql.lit(serial)}`),
      );
      await assert.rejects(inlined(store.db, serials[0]!), /bound parameter/);
      const unused = preparedQuery((db: StoreDb, _serial: string) => db.selectFrom('certificates').select('serial'));
      await assert.rejects(unused(store.db, serials[0]!), /bound parameter/);
    });
  });
}
