/**
 * Remote attestation on the control plane: boot policies (content-addressed YAML), their
 * assignment to devices and groups, single-use evidence nonces bound to one device, every verdict
 * with its reasons, and each device's current trust state.
 */
import type { Kysely, Migration } from 'kysely';

export const attestationInit: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('attestation_policies')
      .addColumn('sha256', 'varchar(64)', (c) => c.primaryKey())
      .addColumn('label', 'varchar(200)', (c) => c.notNull())
      .addColumn('yaml', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .execute();
    // scope 'device' (target = device id) or 'group' (target = group name); a device's own wins.
    await db.schema
      .createTable('attestation_assignments')
      .addColumn('scope', 'varchar(16)', (c) => c.notNull())
      .addColumn('target', 'varchar(200)', (c) => c.notNull())
      .addColumn('policy_sha256', 'varchar(64)', (c) => c.notNull())
      .addColumn('assigned_by', 'varchar(200)', (c) => c.notNull())
      .addColumn('assigned_at', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('attestation_assignments_pk', ['scope', 'target'])
      .execute();
    await db.schema
      .createTable('attestation_device_groups')
      .addColumn('device_id', 'varchar(128)', (c) => c.primaryKey())
      .addColumn('group_name', 'varchar(200)', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('attestation_nonces')
      .addColumn('nonce', 'varchar(64)', (c) => c.primaryKey())
      .addColumn('device_id', 'varchar(128)', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('expires_at', 'text', (c) => c.notNull())
      .addColumn('used_at', 'text')
      .execute();
    await db.schema
      .createTable('attestation_verdicts')
      .addColumn('id', 'varchar(32)', (c) => c.primaryKey())
      .addColumn('device_id', 'varchar(128)', (c) => c.notNull())
      .addColumn('pass', 'integer', (c) => c.notNull())
      .addColumn('reasons', 'text', (c) => c.notNull())
      .addColumn('policy_sha256', 'varchar(64)')
      .addColumn('received_at', 'text', (c) => c.notNull())
      .execute();
    await db.schema
      .createIndex('attestation_verdicts_device')
      .on('attestation_verdicts')
      .columns(['device_id', 'received_at'])
      .execute();
    // trusted_until: the end of the freshness window of the last passing verdict (null once failed).
    // silence_recorded_at: when the timer recorded that the window ran out (once per window).
    await db.schema
      .createTable('attestation_state')
      .addColumn('device_id', 'varchar(128)', (c) => c.primaryKey())
      .addColumn('last_verdict_id', 'varchar(32)', (c) => c.notNull())
      .addColumn('trusted_until', 'text')
      .addColumn('silence_recorded_at', 'text')
      .execute();
  },
  async down(db: Kysely<unknown>) {
    for (const t of [
      'attestation_state',
      'attestation_verdicts',
      'attestation_nonces',
      'attestation_device_groups',
      'attestation_assignments',
      'attestation_policies',
    ])
      await db.schema.dropTable(t).execute();
  },
};

/**
 * The clock of each device's last accepted quote, as JSON `{ clock, resetCount, restartCount }`
 * (clock a decimal string: TPM Clock is a u64 in ms), for the clock rules of
 * src/attest/quote-clock.ts; and what each verdict recorded as having happened since (a reboot), as
 * JSON.
 */
export const attestationQuoteClock: Migration = {
  async up(db: Kysely<unknown>) {
    // One column per statement: SQLite's ALTER TABLE adds one at a time.
    await db.schema.alterTable('attestation_state').addColumn('quote_clock', 'text').execute();
    await db.schema.alterTable('attestation_verdicts').addColumn('events', 'text').execute();
  },
};
