/**
 * Every table of the control plane, as one explicit list of migrations run in list order when the
 * store opens. kysely records applied names in its `kysely_migration` table; a name must never
 * change once shipped, and a new migration goes at the end of the list.
 */
import { Migrator, sql, type Kysely, type Migration, type MigrationProvider } from 'kysely';
import { EdgeguardError } from '../errors/index.ts';
import { attestationInit, attestationQuoteClock } from './migrations/attestation.ts';
import { checklistReportsInit } from './migrations/checklist.ts';
import { auditLogInit } from './migrations/audit.ts';
import { controlPlaneInit } from './migrations/control-plane.ts';
import { deviceTamperedColumn } from './migrations/device-tampered.ts';
import { releaseDirectorInit } from './migrations/release.ts';
import { reviewItemsInit } from './migrations/review.ts';
import { uiSessionsInit } from './migrations/ui.ts';

export const MIGRATIONS: ReadonlyArray<readonly [name: string, migration: Migration]> = [
  ['control-plane/0001_init', controlPlaneInit],
  ['audit/0001_log', auditLogInit],
  ['review/0001_items', reviewItemsInit],
  ['control-plane/0002_tampered', deviceTamperedColumn],
  ['attestation/0001_init', attestationInit],
  ['checklist/0001_reports', checklistReportsInit],
  ['attestation/0002_quote_clock', attestationQuoteClock],
  ['release/0001_director', releaseDirectorInit],
  ['ui/0001_sessions', uiSessionsInit],
];

/** Names of every migration, in the order they run (for tests and `--debug`). */
export function migrationNames(): string[] {
  return MIGRATIONS.map(([name]) => name);
}

class ListProvider implements MigrationProvider {
  constructor(private readonly alreadyApplied: string[]) {}

  async getMigrations(): Promise<Record<string, Migration>> {
    const all: Record<string, Migration> = Object.fromEntries(MIGRATIONS);
    // A database migrated by a newer release carries migrations this one does not know: they are
    // known placeholders, never re-run, instead of kysely's "previously executed migration is missing".
    for (const name of this.alreadyApplied) {
      all[name] ??= { up: async () => undefined };
    }
    return all;
  }
}

/** List position first; names outside the list (a newer release's) after, by name. */
function listOrder(a: string, b: string): number {
  const position = (name: string) => {
    const i = MIGRATIONS.findIndex(([n]) => n === name);
    return i < 0 ? MIGRATIONS.length : i;
  };
  return position(a) - position(b) || (a < b ? -1 : a > b ? 1 : 0);
}

async function appliedMigrations(db: Kysely<unknown>): Promise<string[]> {
  try {
    const r = await sql<{ name: string }>`select name from kysely_migration`.execute(db);
    return r.rows.map((x) => x.name);
  } catch {
    return []; // a fresh database: no migration table yet
  }
}

export async function migrateToLatest(db: Kysely<unknown>): Promise<string[]> {
  const migrator = new Migrator({
    db,
    provider: new ListProvider(await appliedMigrations(db)),
    nameComparator: listOrder,
    // Databases migrated before the list existed applied the same names in alphabetical order.
    allowUnorderedMigrations: true,
  });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === 'Error')?.migrationName;
    throw new EdgeguardError(
      'EG_SERVER',
      `database migration ${failed ?? ''} failed (${(error as Error).message ?? String(error)}); the database was left at the last good migration.`,
      { cause: error },
    );
  }
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}

/** Used by tests to check the database answers at all. */
export async function ping(db: Kysely<unknown>): Promise<void> {
  await sql`select 1`.execute(db);
}
