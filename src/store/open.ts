/**
 * Opening the store: SQLite (one file in the data directory, the default) or PostgreSQL (a
 * `postgres://` URL, for several stateless server replicas). Both are migrated to the latest
 * schema on open.
 */
import { join } from 'node:path';
import { mkdirSync } from 'node:fs';
import BetterSqlite3 from 'better-sqlite3';
import pg from 'pg';
import { Kysely, PostgresDialect, SqliteDialect } from 'kysely';
import { EdgeguardError } from '../errors/index.ts';
import { migrateToLatest } from './migrations.ts';
import type { ControlPlaneTables, StoreDb } from './schema.ts';

export type StoreDialect = 'sqlite' | 'postgres';

export interface OpenStoreOptions {
  /** A `postgres://` or `postgresql://` URL; when absent, SQLite in `dataDir`. */
  url?: string | undefined;
  /** The server's data directory; the SQLite file is `DIR/edgeguard.db`. */
  dataDir?: string | undefined;
  /** An explicit SQLite path (`:memory:` for throwaway stores). */
  sqlitePath?: string | undefined;
  /** Connection pool size for PostgreSQL (default 10). */
  poolSize?: number | undefined;
}

export interface OpenedDb {
  db: StoreDb;
  dialect: StoreDialect;
  /** Human description without credentials, for logs. */
  where: string;
}

export const SQLITE_FILE = 'edgeguard.db';

/**
 * kysely prepares every query anew; on the hot path (authentication on every request) SQLite's
 * prepare step costs more than the query. Reuse prepared statements by SQL text (better-sqlite3
 * re-prepares by itself after a schema change; calls are synchronous, so a statement is never
 * used by two queries at once).
 */
function withStatementCache(sqlite: BetterSqlite3.Database): BetterSqlite3.Database {
  const cache = new Map<string, BetterSqlite3.Statement>();
  return new Proxy(sqlite, {
    get(target, prop) {
      if (prop === 'prepare') {
        return (source: string) => {
          let stmt = cache.get(source);
          if (stmt === undefined) {
            stmt = target.prepare(source);
            if (cache.size >= 1000) cache.clear();
            cache.set(source, stmt);
          }
          return stmt;
        };
      }
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/**
 * A read-only second connection to a store's SQLite file, for readers that should not queue behind
 * the store's single writing connection (the audit log's proof reads). Undefined for `:memory:`.
 */
export function openSqliteReader<T>(where: string): Kysely<T> | undefined {
  const path = /^sqlite:(.+)$/.exec(where)?.[1];
  if (path === undefined || path === ':memory:') return undefined;
  const sqlite = new BetterSqlite3(path, { readonly: true, fileMustExist: true });
  sqlite.pragma('busy_timeout = 5000');
  return new Kysely<T>({ dialect: new SqliteDialect({ database: withStatementCache(sqlite) }) });
}

export async function openDatabase(opts: OpenStoreOptions): Promise<OpenedDb> {
  let opened: OpenedDb;
  if (opts.url !== undefined && /^postgres(ql)?:\/\//.test(opts.url)) {
    const pool = new pg.Pool({ connectionString: opts.url, max: opts.poolSize ?? 10 });
    // An idle client losing its connection must not crash the server; the pool replaces it.
    pool.on('error', () => undefined);
    const db = new Kysely<ControlPlaneTables>({ dialect: new PostgresDialect({ pool }) });
    const u = new URL(opts.url);
    opened = { db, dialect: 'postgres', where: `postgres://${u.host}${u.pathname}` };
  } else if (opts.url !== undefined) {
    throw new EdgeguardError(
      'EG_CONFIG',
      `database URL "${opts.url.replace(/\/\/[^@]*@/, '//***@')}" is not supported; use postgres://user@host:port/db or leave --db out for SQLite.`,
    );
  } else {
    let path = opts.sqlitePath;
    if (path === undefined) {
      if (opts.dataDir === undefined)
        throw new EdgeguardError('EG_USAGE', 'the store needs a data directory or a database URL.');
      mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
      path = join(opts.dataDir, SQLITE_FILE);
    }
    let sqlite: BetterSqlite3.Database;
    try {
      sqlite = new BetterSqlite3(path);
      sqlite.pragma('journal_mode = WAL');
      // An approval or revocation is on disk when the API answers (fsync at each commit).
      sqlite.pragma('synchronous = FULL');
      sqlite.pragma('busy_timeout = 5000');
      sqlite.pragma('foreign_keys = ON');
    } catch (e) {
      throw new EdgeguardError('EG_IO', `could not open the SQLite database ${path} (${(e as Error).message}).`, {
        cause: e,
      });
    }
    const db = new Kysely<ControlPlaneTables>({ dialect: new SqliteDialect({ database: withStatementCache(sqlite) }) });
    opened = { db, dialect: 'sqlite', where: `sqlite:${path}` };
  }
  try {
    await migrateToLatest(opened.db as never);
  } catch (e) {
    await opened.db.destroy().catch(() => undefined);
    if (e instanceof EdgeguardError) throw e;
    throw new EdgeguardError(
      'EG_SERVER',
      `could not reach the database at ${opened.where} (${(e as Error).message}).`,
      { cause: e },
    );
  }
  return opened;
}
