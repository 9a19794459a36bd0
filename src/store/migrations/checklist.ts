/** Device checklist reports: the latest signed report of each device, as it arrived. */
import type { Kysely, Migration } from 'kysely';

export const checklistReportsInit: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('checklist_reports')
      .addColumn('device_id', 'varchar(128)', (c) => c.primaryKey())
      // The DSSE envelope exactly as uploaded: anyone can check it again against the device key.
      .addColumn('envelope', 'text', (c) => c.notNull())
      .addColumn('envelope_sha256', 'varchar(64)', (c) => c.notNull())
      .addColumn('score', 'integer', (c) => c.notNull())
      // JSON arrays/objects: the failing item ids, the totals by status.
      .addColumn('failing', 'text', (c) => c.notNull())
      .addColumn('totals', 'text', (c) => c.notNull())
      .addColumn('generated_at', 'text', (c) => c.notNull())
      .addColumn('received_at', 'text', (c) => c.notNull())
      .execute();
  },
  async down(db: Kysely<unknown>) {
    await db.schema.dropTable('checklist_reports').execute();
  },
};
