/** The audit storage driver for a store's database. */
import type { Store } from '../store/index.ts';
import type { AuditStorage } from './storage.ts';
import { PostgresAuditStorage } from './storage-postgres.ts';
import { SqliteAuditStorage } from './storage-sqlite.ts';

export async function openAuditStorage(store: Store): Promise<AuditStorage> {
  return store.dialect === 'postgres' ? new PostgresAuditStorage(store) : SqliteAuditStorage.open(store);
}
