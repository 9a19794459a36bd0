/**
 * One migrator for the whole control plane. Each module registers its migrations under its own
 * prefix (`control-plane/0001_init`, `audit/0001_log`); kysely runs the ones not yet applied in
 * name order and records them in its `kysely_migration` table, so modules can add migrations
 * independently (unordered migrations are allowed across prefixes).
 */
import { Migrator, sql, type Kysely, type Migration, type MigrationProvider } from 'kysely';
import { EdgeguardError } from '../errors/index.ts';

const REGISTRY = new Map<string, Migration>();

/**
 * Add migrations under `prefix` (a module name). Call at module load time, before `openStore`.
 * Names must be stable forever once shipped; use `0001_what`, `0002_what`, ...
 */
export function registerMigrations(prefix: string, migrations: Record<string, Migration>): void {
  if (!/^[a-z][a-z0-9-]*$/.test(prefix))
    throw new EdgeguardError(
      'EG_INTERNAL',
      `migration prefix "${prefix}" must be lowercase letters, digits and dashes.`,
    );
  for (const [name, migration] of Object.entries(migrations)) {
    const full = `${prefix}/${name}`;
    const existing = REGISTRY.get(full);
    if (existing !== undefined && existing !== migration)
      throw new EdgeguardError('EG_INTERNAL', `migration ${full} is registered twice.`);
    REGISTRY.set(full, migration);
  }
}

/** Names of every registered migration, sorted (for tests and `--debug`). */
export function registeredMigrations(): string[] {
  return [...REGISTRY.keys()].sort();
}

class RegistryProvider implements MigrationProvider {
  constructor(private readonly alreadyApplied: string[]) {}

  async getMigrations(): Promise<Record<string, Migration>> {
    const all: Record<string, Migration> = Object.fromEntries(REGISTRY);
    // A process that does not load every module (a CLI tool, a test) still opens a database that
    // a fuller process migrated: migrations applied earlier but not registered here are known
    // placeholders, never re-run, instead of kysely's "previously executed migration is missing".
    for (const name of this.alreadyApplied) {
      all[name] ??= { up: async () => undefined };
    }
    return all;
  }
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
    provider: new RegistryProvider(await appliedMigrations(db)),
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

// The control plane's own schema. Text columns only (see schema.ts) keep both dialects alike.
registerMigrations('control-plane', {
  '0001_init': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('devices')
        .addColumn('id', 'varchar(64)', (c) => c.primaryKey())
        .addColumn('ek_pub_sha256', 'varchar(64)', (c) => c.notNull().unique())
        .addColumn('ek_cert_pem', 'text')
        .addColumn('ak_public', 'text', (c) => c.notNull())
        .addColumn('ak_name', 'varchar(200)', (c) => c.notNull())
        .addColumn('binding_public', 'text', (c) => c.notNull())
        .addColumn('key_provider', 'varchar(16)', (c) => c.notNull())
        .addColumn('status', 'varchar(16)', (c) => c.notNull())
        .addColumn('label', 'varchar(200)')
        .addColumn('csr_pem', 'text', (c) => c.notNull())
        .addColumn('poll_token_sha256', 'varchar(64)', (c) => c.notNull())
        .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
        .addColumn('approved_at', 'varchar(32)')
        .addColumn('approved_by', 'varchar(200)')
        .addColumn('revoked_at', 'varchar(32)')
        .addColumn('last_seen_at', 'varchar(32)')
        .execute();
      await db.schema.createIndex('devices_status_idx').on('devices').column('status').execute();

      await db.schema
        .createTable('certificates')
        .addColumn('serial', 'varchar(64)', (c) => c.primaryKey())
        .addColumn('device_id', 'varchar(64)')
        .addColumn('role', 'varchar(16)', (c) => c.notNull())
        .addColumn('subject', 'varchar(400)', (c) => c.notNull())
        .addColumn('not_before', 'varchar(32)', (c) => c.notNull())
        .addColumn('not_after', 'varchar(32)', (c) => c.notNull())
        .addColumn('pem', 'text', (c) => c.notNull())
        .addColumn('issued_at', 'varchar(32)', (c) => c.notNull())
        .addColumn('revoked_at', 'varchar(32)')
        .addColumn('revocation_reason', 'varchar(64)')
        .execute();
      await db.schema.createIndex('certificates_device_idx').on('certificates').column('device_id').execute();

      await db.schema
        .createTable('enrollment_challenges')
        .addColumn('id', 'varchar(64)', (c) => c.primaryKey())
        .addColumn('kind', 'varchar(16)', (c) => c.notNull())
        .addColumn('value', 'varchar(128)', (c) => c.notNull())
        .addColumn('payload', 'text')
        .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
        .addColumn('expires_at', 'varchar(32)', (c) => c.notNull())
        .addColumn('used_at', 'varchar(32)')
        .execute();
      await db.schema
        .createIndex('enrollment_challenges_expiry_idx')
        .on('enrollment_challenges')
        .column('expires_at')
        .execute();
    },
    async down(db: Kysely<unknown>) {
      await db.schema.dropTable('enrollment_challenges').execute();
      await db.schema.dropTable('certificates').execute();
      await db.schema.dropTable('devices').execute();
    },
  },
});

/** Used by tests to check the database answers at all. */
export async function ping(db: Kysely<unknown>): Promise<void> {
  await sql`select 1`.execute(db);
}
