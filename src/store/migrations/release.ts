/**
 * The release director: which release each device or group must run (assignments, with the canary
 * members picked when a canary was asked for), the content keys of releases sealed to the
 * director's key, the version of the director metadata issued to each device (it only grows),
 * single-use nonces for version reports, and the signed version reports devices sent.
 */
import type { Kysely, Migration } from 'kysely';

export const releaseDirectorInit: Migration = {
  async up(db: Kysely<unknown>) {
    // scope 'device' (target = device id) or 'group' (target = group name); state active | halted.
    await db.schema
      .createTable('release_assignments')
      .addColumn('id', 'varchar(32)', (c) => c.primaryKey())
      .addColumn('release_name', 'varchar(128)', (c) => c.notNull())
      .addColumn('version', 'integer', (c) => c.notNull())
      .addColumn('target_path', 'varchar(512)', (c) => c.notNull())
      .addColumn('scope', 'varchar(16)', (c) => c.notNull())
      .addColumn('target', 'varchar(200)', (c) => c.notNull())
      .addColumn('canary_percent', 'integer')
      .addColumn('max_failures', 'integer', (c) => c.notNull())
      .addColumn('state', 'varchar(16)', (c) => c.notNull())
      .addColumn('assigned_by', 'varchar(200)', (c) => c.notNull())
      .addColumn('assigned_at', 'text', (c) => c.notNull())
      .addColumn('halted_at', 'text')
      .addColumn('halt_reason', 'text')
      .execute();
    await db.schema
      .createIndex('release_assignments_target')
      .on('release_assignments')
      .columns(['scope', 'target', 'assigned_at'])
      .execute();
    await db.schema
      .createTable('release_canary_members')
      .addColumn('assignment_id', 'varchar(32)', (c) => c.notNull())
      .addColumn('device_id', 'varchar(128)', (c) => c.notNull())
      .addPrimaryKeyConstraint('release_canary_members_pk', ['assignment_id', 'device_id'])
      .execute();
    // sealed: the HPKE sealed box (docs/formats.md, "Director content keys") of the 32 key bytes.
    await db.schema
      .createTable('release_content_keys')
      .addColumn('release_name', 'varchar(128)', (c) => c.notNull())
      .addColumn('version', 'integer', (c) => c.notNull())
      .addColumn('kid', 'varchar(43)', (c) => c.notNull())
      .addColumn('sealed', 'text', (c) => c.notNull())
      .addColumn('stored_at', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('release_content_keys_pk', ['release_name', 'version'])
      .execute();
    await db.schema
      .createTable('release_director_versions')
      .addColumn('device_id', 'varchar(128)', (c) => c.primaryKey())
      .addColumn('version', 'integer', (c) => c.notNull())
      .addColumn('issued_at', 'text', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('release_report_nonces')
      .addColumn('nonce', 'varchar(64)', (c) => c.primaryKey())
      .addColumn('device_id', 'varchar(128)', (c) => c.notNull())
      .addColumn('expires_at', 'text', (c) => c.notNull())
      .addColumn('used_at', 'text')
      .execute();
    await db.schema
      .createTable('release_reports')
      .addColumn('id', 'varchar(32)', (c) => c.primaryKey())
      .addColumn('device_id', 'varchar(128)', (c) => c.notNull())
      .addColumn('release_name', 'varchar(128)', (c) => c.notNull())
      .addColumn('version', 'integer', (c) => c.notNull())
      .addColumn('status', 'varchar(16)', (c) => c.notNull())
      .addColumn('detail', 'text')
      .addColumn('assignment_id', 'varchar(32)')
      .addColumn('envelope', 'text', (c) => c.notNull())
      .addColumn('received_at', 'text', (c) => c.notNull())
      .execute();
    await db.schema
      .createIndex('release_reports_device')
      .on('release_reports')
      .columns(['device_id', 'received_at'])
      .execute();
  },
  async down(db: Kysely<unknown>) {
    for (const t of [
      'release_reports',
      'release_report_nonces',
      'release_director_versions',
      'release_content_keys',
      'release_canary_members',
      'release_assignments',
    ])
      await db.schema.dropTable(t).execute();
  },
};
