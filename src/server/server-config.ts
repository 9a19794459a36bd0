/**
 * DATA/server.json: which database the server in DATA uses, written at every start, so that
 * `admin` commands given only `--data` open that same store instead of creating a SQLite file
 * next to a PostgreSQL deployment (whose certificates the server would then not know). The URL is
 * written without its password; give it to admin commands through PGPASSWORD or ~/.pgpass.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { EdgeguardError, FILE_CAPS, readBoundedTextSync } from '../errors/index.ts';
import { SQLITE_FILE, Store } from '../store/index.ts';

export const SERVER_CONFIG_FILE = 'server.json';

interface ServerConfig {
  version: 1;
  /** 'sqlite' (DATA/edgeguard.db) or a postgres:// URL without password. */
  database: string;
}

export function writeServerConfig(dataDir: string, dbUrl: string | undefined): void {
  const config: ServerConfig = { version: 1, database: dbUrl === undefined ? 'sqlite' : withoutPassword(dbUrl) };
  writeFileSync(join(dataDir, SERVER_CONFIG_FILE), JSON.stringify(config, null, 2) + '\n', { mode: 0o600 });
}

/**
 * The store of the server in `dataDir`: `--db` when given, else what server.json names. Never a new
 * one: without either, only an existing DATA/edgeguard.db is opened.
 */
export async function openServerStore(o: { dataDir: string; db?: string | undefined }): Promise<Store> {
  if (o.db !== undefined) return Store.open({ dataDir: o.dataDir, url: o.db });
  const database = readServerConfig(o.dataDir)?.database;
  if (database !== undefined && database !== 'sqlite') return Store.open({ url: database });
  if (!existsSync(join(o.dataDir, SQLITE_FILE)))
    throw new EdgeguardError(
      'EG_CONFIG',
      `${o.dataDir} holds no server database (no ${SQLITE_FILE}, no ${SERVER_CONFIG_FILE}); pass --db with the server's database URL, or start the server with --data ${o.dataDir} once. A new store is not created here: the server would not know what it records.`,
    );
  return Store.open({ dataDir: o.dataDir });
}

function readServerConfig(dataDir: string): ServerConfig | undefined {
  const path = join(dataDir, SERVER_CONFIG_FILE);
  if (!existsSync(path)) return undefined;
  const text = readBoundedTextSync(path, FILE_CAPS.config, 'read the server configuration');
  try {
    const parsed = JSON.parse(text) as Partial<ServerConfig>;
    if (parsed.version === 1 && typeof parsed.database === 'string') return parsed as ServerConfig;
  } catch (e) {
    throw new EdgeguardError('EG_CONFIG', `${path} is not valid JSON; remove it and start the server again.`, {
      cause: e,
    });
  }
  throw new EdgeguardError('EG_CONFIG', `${path} is not a server configuration; remove it and start the server again.`);
}

function withoutPassword(url: string): string {
  const u = new URL(url);
  u.password = '';
  return u.toString();
}
