/**
 * A read statement built and compiled once per database handle, then run with new values. kysely
 * builds an operation tree and compiles it to SQL on every call (4-25 us for the statements run on
 * every attestation push, measured alone), while the SQL of such a statement never changes, only
 * its values. The statement is built once with a marker string for each argument; every marker
 * must come out as a bound parameter, never in the SQL text (checked at the first build, which
 * throws otherwise), and each run binds the real values in their place. The SQL is what kysely
 * compiles for the handle's own dialect, so SQLite and PostgreSQL each get theirs.
 */
import { randomBytes } from 'node:crypto';
import { createQueryId, type Compilable, type CompiledQuery, type Kysely } from 'kysely';

interface Compiled<R> {
  query: CompiledQuery<R>;
  /** For each bound parameter: the index of the argument it takes, or -1 for a constant. */
  slots: number[];
}

/**
 * `build(db, ...args)` with string arguments (identifiers, serials: values a WHERE compares);
 * returns a function that runs it on a handle and resolves to its rows.
 */
export function preparedQuery<DB, A extends string[], R>(
  build: (db: Kysely<DB>, ...args: A) => Compilable<R>,
): (db: Kysely<DB>, ...args: A) => Promise<R[]> {
  const byHandle = new WeakMap<Kysely<DB>, Compiled<R>>();
  return async (db, ...args) => {
    let compiled = byHandle.get(db);
    if (compiled === undefined) {
      const tag = randomBytes(8).toString('hex');
      const markers = args.map((_, i) => `\u0000edgeguard-argument-${tag}-${i}`) as A;
      const query = build(db, ...markers).compile();
      const slots = query.parameters.map((p) => (typeof p === 'string' ? markers.indexOf(p) : -1));
      if (markers.some((m, i) => query.sql.includes(m) || !slots.includes(i)))
        throw new Error('preparedQuery: every argument must be a bound parameter of the statement');
      compiled = { query, slots };
      byHandle.set(db, compiled);
    }
    const { query, slots } = compiled;
    const parameters = query.parameters.map((p, i) => (slots[i]! >= 0 ? args[slots[i]!] : p));
    const result = await db.executeQuery<R>({ ...query, parameters, queryId: createQueryId() });
    return result.rows;
  };
}
