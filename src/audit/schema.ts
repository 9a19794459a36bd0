/**
 * The audit log's tables, added to the control plane's store through its migration registry.
 * Hashes are lowercase hex text and leaves UTF-8 text (canonical JSON), so both dialects store
 * and compare them alike.
 *
 *   audit_entries        idx -> leaf                  the log, in sequence order
 *   audit_nodes          (level, idx) -> hash         every complete subtree (level 0 = leaf hash)
 *   audit_state          id = 1 -> size, root         the integrated tree; its row is the sequencer lock
 *   audit_checkpoints    size -> root, signed note    every checkpoint the log signed
 *   audit_device_entries (device_id, seq) -> idx, hash   device journal entries already logged
 *   audit_device_heads   device_id -> seq, hash       each device's journal head, for continuity
 */
import { sql, type Kysely } from 'kysely';
import { registerMigrations } from '../store/index.ts';

export type AuditEntriesTable = {
  idx: number | string;
  leaf: string;
};
export type AuditNodesTable = {
  level: number;
  idx: number | string;
  hash: string;
};
export type AuditStateTable = {
  id: number;
  size: number | string;
  root: string;
  updated_at: string;
};
export type AuditCheckpointsTable = {
  size: number | string;
  root: string;
  note: string;
  created_at: string;
};
export type AuditDeviceEntriesTable = {
  device_id: string;
  seq: number | string;
  idx: number | string;
  hash: string;
};
export type AuditDeviceHeadsTable = {
  device_id: string;
  seq: number | string;
  hash: string;
  updated_at: string;
};

export type AuditTables = {
  audit_entries: AuditEntriesTable;
  audit_nodes: AuditNodesTable;
  audit_state: AuditStateTable;
  audit_checkpoints: AuditCheckpointsTable;
  audit_device_entries: AuditDeviceEntriesTable;
  audit_device_heads: AuditDeviceHeadsTable;
};

function isSqlite(db: Kysely<unknown>): boolean {
  return db.getExecutor().adapter.constructor.name === 'SqliteAdapter';
}

registerMigrations('audit', {
  '0001_log': {
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
  },
});
