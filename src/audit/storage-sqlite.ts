/**
 * The audit log on SQLite (one file, one writing connection per store). The sequencer lock is the
 * database write lock, taken by writing the audit_state row first in each batch's transaction.
 * Proofs are read through a read-only connection of the driver's own, so they do not queue behind
 * the store's writer.
 */
import { sql, type Kysely } from 'kysely';
import { openSqliteReader, type Store } from '../store/index.ts';
import type { NodeSource } from './merkle.ts';
import type { AuditTables } from './schema.ts';
import { KyselyAuditStorage, readNodes, type AuditTrx } from './storage-kysely.ts';
import type { TreeState } from './storage.ts';

export class SqliteAuditStorage extends KyselyAuditStorage {
  readonly proofNodes: NodeSource;
  private readonly reader: Kysely<AuditTables> | undefined;

  private constructor(store: Store, reader: Kysely<AuditTables> | undefined) {
    super(store);
    this.reader = reader;
    this.proofNodes = reader ? { getNodes: (ids) => readNodes(reader, ids) } : this.nodes;
  }

  static async open(store: Store): Promise<SqliteAuditStorage> {
    // An appended entry is acknowledged as durable: in WAL mode only synchronous=FULL syncs the
    // WAL on every commit (NORMAL may lose the last commits on power loss). One connection per
    // store, so this holds for the store's other writers too.
    await sql`pragma synchronous = FULL`.execute(store.db);
    let reader: Kysely<AuditTables> | undefined;
    try {
      reader = openSqliteReader<AuditTables>(store.where);
    } catch {
      reader = undefined; // proofs then share the store's connection
    }
    return new SqliteAuditStorage(store, reader);
  }

  protected async lock(trx: AuditTrx): Promise<TreeState> {
    // Writing first takes the database's write lock for the rest of the transaction.
    await trx
      .updateTable('audit_state')
      .set((eb) => ({ id: eb.ref('id') }))
      .where('id', '=', 1)
      .execute();
    return this.readState(trx);
  }

  override async getEntry(index: number): Promise<string | undefined> {
    if (this.reader === undefined) return super.getEntry(index);
    const row = await this.reader
      .selectFrom('audit_entries')
      .select('leaf')
      .where('idx', '=', index)
      .executeTakeFirst();
    return row?.leaf;
  }

  override async close(): Promise<void> {
    await this.reader?.destroy();
  }
}
