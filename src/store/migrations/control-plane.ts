/** The control plane's own tables. Text columns only (see ../schema.ts) keep both dialects alike. */
import type { Kysely, Migration } from 'kysely';

export const controlPlaneInit: Migration = {
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
};
