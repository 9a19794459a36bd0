/**
 * The dashboard's sign-in: one-time links (`edgeguard admin ui-login`) and the sessions they
 * open. Only SHA-256 digests of the link tokens and session ids are stored, so a database dump
 * signs nobody in.
 */
import type { Kysely, Migration } from 'kysely';

export const uiSessionsInit: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('ui_login_links')
      .addColumn('token_sha256', 'varchar(64)', (c) => c.primaryKey())
      .addColumn('admin_name', 'varchar(200)', (c) => c.notNull())
      .addColumn('admin_serial', 'varchar(64)')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('expires_at', 'text', (c) => c.notNull())
      .addColumn('used_at', 'text')
      // Refused attempts to reuse the link: only the first is an audit entry.
      .addColumn('refusals', 'integer', (c) => c.notNull().defaultTo(0))
      .execute();
    await db.schema
      .createTable('ui_sessions')
      .addColumn('id_sha256', 'varchar(64)', (c) => c.primaryKey())
      .addColumn('admin_name', 'varchar(200)', (c) => c.notNull())
      .addColumn('admin_serial', 'varchar(64)')
      .addColumn('csrf_token', 'varchar(64)', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('expires_at', 'text', (c) => c.notNull())
      .execute();
  },
  async down(db: Kysely<unknown>) {
    await db.schema.dropTable('ui_sessions').execute();
    await db.schema.dropTable('ui_login_links').execute();
  },
};
