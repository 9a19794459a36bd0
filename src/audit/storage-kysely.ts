/**
 * The queries both drivers share: kysely builds them for either dialect. A driver adds only what
 * differs per database (how the sequencer lock is taken, connection set-up).
 */
import { sql, type Kysely, type Transaction } from 'kysely';
import { EdgeguardError } from '../errors/index.ts';
import type { Store } from '../store/index.ts';
import type { NodeId, NodeSource } from './merkle.ts';
import type { AuditTables } from './schema.ts';
import type { AuditStorage, AuditWriteTx, DeviceHeadRow, IndexedRow, StoredCheckpoint, TreeState } from './storage.ts';

export type AuditDb = Kysely<AuditTables>;
export type AuditTrx = Transaction<AuditTables>;

/** Rows per INSERT statement (SQLite allows at most 32766 bound values per statement). */
const INSERT_CHUNK = 2000;

export abstract class KyselyAuditStorage implements AuditStorage {
  readonly where: string;
  readonly nodes: NodeSource;
  abstract readonly proofNodes: NodeSource;
  protected readonly db: AuditDb;

  protected constructor(store: Store) {
    this.db = store.db.withTables<AuditTables>() as unknown as AuditDb;
    this.where = store.where;
    this.nodes = { getNodes: (ids) => readNodes(this.db, ids) };
  }

  /** Take the sequencer lock inside `trx` (the driver's part). */
  protected abstract lock(trx: AuditTrx): Promise<TreeState>;

  write<T>(work: (tx: AuditWriteTx) => Promise<T>): Promise<T> {
    return this.db.transaction().execute((trx) => work(this.writeTx(trx)));
  }

  private writeTx(trx: AuditTrx): AuditWriteTx {
    return {
      lockState: () => this.lock(trx),
      getNodes: (ids) => readNodes(trx, ids),
      insertEntries: (rows) => insertChunked(trx, 'audit_entries', rows),
      insertNodes: (rows) => insertChunked(trx, 'audit_nodes', rows),
      setState: async (state, updatedAt) => {
        await trx
          .updateTable('audit_state')
          .set({ size: state.size, root: state.root.toString('hex'), updated_at: updatedAt })
          .where('id', '=', 1)
          .execute();
      },
      deviceHead: (deviceId) => readDeviceHead(trx, deviceId),
      deviceEntry: async (deviceId, seq) => {
        const row = await trx
          .selectFrom('audit_device_entries')
          .select(['idx', 'hash'])
          .where('device_id', '=', deviceId)
          .where('seq', '=', seq)
          .executeTakeFirst();
        return row ? { idx: Number(row.idx), hash: row.hash } : undefined;
      },
      insertDeviceEntries: (rows) => insertChunked(trx, 'audit_device_entries', rows),
      setDeviceHead: async (deviceId, head, updatedAt) => {
        const values = { seq: head.seq, hash: head.hash, updated_at: updatedAt };
        await trx
          .insertInto('audit_device_heads')
          .values({ device_id: deviceId, ...values })
          .onConflict((oc) => oc.column('device_id').doUpdateSet(values))
          .execute();
      },
      inSavepoint: async (work) => {
        await sql`savepoint audit_store_work`.execute(trx);
        try {
          await work(trx as unknown as Transaction<unknown>);
        } catch (e) {
          await sql`rollback to savepoint audit_store_work`.execute(trx);
          await sql`release savepoint audit_store_work`.execute(trx);
          throw e;
        }
        await sql`release savepoint audit_store_work`.execute(trx);
      },
    };
  }

  readState(db: AuditDb | AuditTrx = this.db): Promise<TreeState> {
    return readState(db);
  }

  async getEntry(index: number): Promise<string | undefined> {
    const row = await this.db.selectFrom('audit_entries').select('leaf').where('idx', '=', index).executeTakeFirst();
    return row?.leaf;
  }

  async entriesFrom(start: number, limit: number, end?: number): Promise<IndexedRow[]> {
    let q = this.db.selectFrom('audit_entries').select(['idx', 'leaf']).where('idx', '>=', start);
    if (end !== undefined) q = q.where('idx', '<', end);
    const rows = await q.orderBy('idx').limit(limit).execute();
    return rows.map((r) => ({ idx: Number(r.idx), value: r.leaf }));
  }

  async nodesAtLevel(level: number, lo: number, hi: number): Promise<IndexedRow[]> {
    const rows = await this.db
      .selectFrom('audit_nodes')
      .select(['idx', 'hash'])
      .where('level', '=', level)
      .where('idx', '>=', lo)
      .where('idx', '<', hi)
      .orderBy('idx')
      .execute();
    return rows.map((r) => ({ idx: Number(r.idx), value: r.hash }));
  }

  deviceHead(deviceId: string): Promise<DeviceHeadRow | undefined> {
    return readDeviceHead(this.db, deviceId);
  }

  async latestCheckpoint(): Promise<StoredCheckpoint | undefined> {
    const row = await this.db
      .selectFrom('audit_checkpoints')
      .select(['size', 'root', 'note'])
      .orderBy('size', 'desc')
      .limit(1)
      .executeTakeFirst();
    return row && checkpointOf(row);
  }

  async checkpointAt(size: number): Promise<StoredCheckpoint | undefined> {
    const row = await this.db
      .selectFrom('audit_checkpoints')
      .select(['size', 'root', 'note'])
      .where('size', '=', size)
      .executeTakeFirst();
    return row && checkpointOf(row);
  }

  async checkpoints(): Promise<StoredCheckpoint[]> {
    const rows = await this.db
      .selectFrom('audit_checkpoints')
      .select(['size', 'root', 'note'])
      .orderBy('size')
      .execute();
    return rows.map(checkpointOf);
  }

  async insertCheckpoint(cp: StoredCheckpoint, createdAt: string): Promise<StoredCheckpoint> {
    await this.db
      .insertInto('audit_checkpoints')
      .values({ size: cp.size, root: cp.root.toString('hex'), note: cp.note, created_at: createdAt })
      .onConflict((oc) => oc.column('size').doNothing())
      .execute();
    return (await this.checkpointAt(cp.size)) as StoredCheckpoint;
  }

  async close(): Promise<void> {
    // The store's connection belongs to the store; a driver closes only what it opened itself.
  }
}

function checkpointOf(row: { size: number | string; root: string; note: string }): StoredCheckpoint {
  return { size: Number(row.size), root: Buffer.from(row.root, 'hex'), note: row.note };
}

async function readState(db: AuditDb | AuditTrx): Promise<TreeState> {
  const row = await db.selectFrom('audit_state').select(['size', 'root']).where('id', '=', 1).executeTakeFirst();
  if (row === undefined)
    throw new EdgeguardError(
      'EG_AUDIT_INCONSISTENT',
      'the audit log state row is missing; the audit tables were altered.',
    );
  return { size: Number(row.size), root: Buffer.from(row.root, 'hex') };
}

async function readDeviceHead(db: AuditDb | AuditTrx, deviceId: string): Promise<DeviceHeadRow | undefined> {
  const row = await db
    .selectFrom('audit_device_heads')
    .select(['seq', 'hash'])
    .where('device_id', '=', deviceId)
    .executeTakeFirst();
  return row ? { seq: Number(row.seq), hash: row.hash } : undefined;
}

async function insertChunked<T extends 'audit_entries' | 'audit_nodes' | 'audit_device_entries'>(
  trx: AuditTrx,
  table: T,
  rows: ReadonlyArray<AuditTables[T]>,
): Promise<void> {
  for (let i = 0; i < rows.length; i += INSERT_CHUNK)
    await trx
      .insertInto(table)
      .values(rows.slice(i, i + INSERT_CHUNK) as never)
      .execute();
}

/** Nodes by id, in the order asked; a missing node means the tables were altered. */
export async function readNodes(db: Kysely<AuditTables>, ids: readonly NodeId[]): Promise<Uint8Array[]> {
  if (ids.length === 0) return [];
  const unique = [...new Map(ids.map((id) => [`${id.level}/${id.index}`, id])).values()];
  // One statement of (level = ? AND idx = ?) pairs on the primary key, built without the query
  // builder: proofs are the hot read path and need only this.
  const where = sql.join(
    unique.map((id) => sql`(level = ${id.level} and idx = ${id.index})`),
    sql` or `,
  );
  const rows = (
    await sql<{
      level: number;
      idx: number | string;
      hash: string;
    }>`select level, idx, hash from audit_nodes where ${where}`.execute(db)
  ).rows;
  const map = new Map(rows.map((r) => [`${r.level}/${Number(r.idx)}`, r.hash]));
  return ids.map((id) => {
    const h = map.get(`${id.level}/${id.index}`);
    if (h === undefined)
      throw new EdgeguardError(
        'EG_AUDIT_INCONSISTENT',
        `tree node ${id.level}/${id.index} is missing from the log store; the audit tables were altered.`,
      );
    return Buffer.from(h, 'hex');
  });
}
