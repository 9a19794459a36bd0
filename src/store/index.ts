/**
 * The control plane's store: kysely over SQLite (default) or PostgreSQL, migrated on open through
 * one explicit list of every table's migrations (migrations.ts).
 */
export {
  Store,
  type DeviceRecord,
  type CertificateRecord,
  type ChallengeRecord,
  type NewDevice,
  type NewCertificate,
} from './store.ts';
export {
  openDatabase,
  openSqliteReader,
  SQLITE_FILE,
  type OpenStoreOptions,
  type StoreDialect,
  type OpenedDb,
} from './open.ts';
export { MIGRATIONS, migrationNames, migrateToLatest } from './migrations.ts';
export { GroupCommit } from './group-commit.ts';
export { preparedQuery } from './prepared.ts';
export type {
  StoreDb,
  ControlPlaneTables,
  DevicesTable,
  CertificatesTable,
  EnrollmentChallengesTable,
  DeviceStatus,
  KeyProvider,
  CertificateRole,
  ChallengeKind,
} from './schema.ts';
export type { Migration } from 'kysely';
