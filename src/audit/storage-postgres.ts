/**
 * The audit log on PostgreSQL. Several server replicas append to one log: the sequencer lock is a
 * row lock on the single audit_state row (SELECT ... FOR UPDATE), held to the end of the batch's
 * transaction, so batches from any replica get consecutive, non-overlapping indices.
 */
import type { Store } from '../store/index.ts';
import type { NodeSource } from './merkle.ts';
import { KyselyAuditStorage, type AuditTrx } from './storage-kysely.ts';
import type { TreeState } from './storage.ts';

export class PostgresAuditStorage extends KyselyAuditStorage {
  readonly proofNodes: NodeSource;

  constructor(store: Store) {
    super(store);
    this.proofNodes = this.nodes;
  }

  protected async lock(trx: AuditTrx): Promise<TreeState> {
    const row = await trx
      .selectFrom('audit_state')
      .select(['size', 'root'])
      .where('id', '=', 1)
      .forUpdate()
      .executeTakeFirstOrThrow();
    return { size: Number(row.size), root: Buffer.from(row.root, 'hex') };
  }
}
