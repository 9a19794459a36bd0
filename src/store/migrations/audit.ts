/**
 * The audit log's tables (their row types and meaning: src/audit/schema.ts). Hashes are lowercase
 * hex text and leaves UTF-8 text, so both dialects store and compare them alike.
 */
import { sql, type Kysely, type Migration } from 'kysely';

function isSqlite(db: Kysely<unknown>): boolean {
  return db.getExecutor().adapter.constructor.name === 'SqliteAdapter';
}

export const auditLogInit: Migration = {
  async up(db: Kysely<unknown>) {
    const sqlite = isSqlite(db);
    // On SQLite an INTEGER PRIMARY KEY is the rowid itself: no second index to maintain.
    await db.schema
      .createTable('audit_entries')
      .addColumn('idx', sqlite ? 'integer' : 'bigint', (c) => c.primaryKey())
      .addColumn('leaf', 'text', (c) => c.notNull())
      .execute();
    let nodes = db.schema
      .createTable('audit_nodes')
      .addColumn('level', 'integer', (c) => c.notNull())
      .addColumn('idx', 'bigint', (c) => c.notNull())
      .addColumn('hash', 'varchar(64)', (c) => c.notNull())
      .addPrimaryKeyConstraint('audit_nodes_pk', ['level', 'idx']);
    if (sqlite) nodes = nodes.modifyEnd(sql`without rowid`);
    await nodes.execute();
    await db.schema
      .createTable('audit_state')
      .addColumn('id', 'integer', (c) => c.primaryKey())
      .addColumn('size', 'bigint', (c) => c.notNull())
      .addColumn('root', 'varchar(64)', (c) => c.notNull())
      .addColumn('updated_at', 'varchar(32)', (c) => c.notNull())
      .execute();
    await db
      .insertInto('audit_state' as never)
      .values({
        id: 1,
        size: 0,
        root: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
        updated_at: new Date().toISOString(),
      } as never)
      .execute();
    await db.schema
      .createTable('audit_checkpoints')
      .addColumn('size', 'bigint', (c) => c.primaryKey())
      .addColumn('root', 'varchar(64)', (c) => c.notNull())
      .addColumn('note', 'text', (c) => c.notNull())
      .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('audit_device_entries')
      .addColumn('device_id', 'varchar(64)', (c) => c.notNull())
      .addColumn('seq', 'bigint', (c) => c.notNull())
      .addColumn('idx', 'bigint', (c) => c.notNull())
      .addColumn('hash', 'varchar(64)', (c) => c.notNull())
      .addPrimaryKeyConstraint('audit_device_entries_pk', ['device_id', 'seq'])
      .execute();
    await db.schema
      .createTable('audit_device_heads')
      .addColumn('device_id', 'varchar(64)', (c) => c.primaryKey())
      .addColumn('seq', 'bigint', (c) => c.notNull())
      .addColumn('hash', 'varchar(64)', (c) => c.notNull())
      .addColumn('updated_at', 'varchar(32)', (c) => c.notNull())
      .execute();
  },
  async down(db: Kysely<unknown>) {
    for (const t of [
      'audit_device_heads',
      'audit_device_entries',
      'audit_checkpoints',
      'audit_state',
      'audit_nodes',
      'audit_entries',
    ]) {
      await db.schema.dropTable(t).execute();
    }
  },
};
