/** The `tampered` device status: when a device's journal reported physical tampering. */
import type { Kysely, Migration } from 'kysely';

export const deviceTamperedColumn: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema.alterTable('devices').addColumn('tampered_at', 'varchar(32)').execute();
  },
};
