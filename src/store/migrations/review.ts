/** The control plane's review queue: sealed review items as devices delivered them. */
import type { Kysely, Migration } from 'kysely';

export const reviewItemsInit: Migration = {
  async up(db: Kysely<unknown>) {
    // IF NOT EXISTS: servers before this migration created the table themselves when they started.
    await db.schema
      .createTable('review_items')
      .ifNotExists()
      .addColumn('id', 'varchar(32)', (c) => c.primaryKey())
      .addColumn('device_id', 'varchar(128)', (c) => c.notNull())
      .addColumn('key_id', 'varchar(16)', (c) => c.notNull())
      .addColumn('created_ms', 'bigint', (c) => c.notNull())
      .addColumn('received_at', 'text', (c) => c.notNull())
      .addColumn('size', 'integer', (c) => c.notNull())
      .addColumn('item', 'text', (c) => c.notNull())
      .execute();
  },
  async down(db: Kysely<unknown>) {
    await db.schema.dropTable('review_items').execute();
  },
};
