/**
 * The control plane's store: kysely over SQLite (default) or PostgreSQL, with one migrator that
 * other modules extend through `registerMigrations`.
 */
export {
  Store,
  type DeviceRecord,
  type CertificateRecord,
  type ChallengeRecord,
  type NewDevice,
  type NewCertificate,
} from './store.ts';
export { openDatabase, SQLITE_FILE, type OpenStoreOptions, type StoreDialect, type OpenedDb } from './open.ts';
export { registerMigrations, registeredMigrations, migrateToLatest } from './migrations.ts';
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
