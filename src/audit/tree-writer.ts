/**
 * Integration (RFC 9162 section 2.1): under the sequencer lock, new leaves get the next indices, and
 * each leaf and every subtree it completes is stored with the new size and root, in one
 * transaction. The tree's right edge from the last commit is kept, so a batch does not re-read the
 * edge from the store while no other writer moved the tree.
 */
import { EdgeguardError } from '../errors/index.ts';
import { CompactRange, hashLeaf, rangeNodes } from './merkle.ts';
import type { AppendUnit, UnitOutcome } from './sequencer.ts';
import type { AuditStorage, AuditWriteTx } from './storage.ts';

/** The stored size and the latest signed size when the store is behind the latest checkpoint. */
export async function storeBehindCheckpoint(
  storage: AuditStorage,
  stored: number,
): Promise<{ stored: number; signed: number } | undefined> {
  const latest = await storage.latestCheckpoint();
  return latest !== undefined && latest.size > stored ? { stored, signed: latest.size } : undefined;
}

/**
 * Checkpoints only grow, and each one was signed over entries this store held: a store smaller than
 * the latest one lost entries. Appending would hand out indices already signed with other contents.
 */
function refuseBehindCheckpoint(stored: number, signed: number): void {
  if (signed <= stored) return;
  throw new EdgeguardError(
    'EG_AUDIT_BEHIND',
    `the audit store holds ${stored} entries but a checkpoint was signed at size ${signed}; appends are refused so that no index is reused. Restore the missing entries (the latest backup) and run \`edgeguard audit verify --full\`.`,
    { details: { stored, signed } },
  );
}

/** Appends leaves inside the current transaction; resolves with the index of the first. */
export type AppendLeaves = (leaves: readonly Buffer[]) => Promise<number>;

export class TreeWriter {
  /** The right edge of the tree as this process last committed it. */
  private edge: CompactRange | undefined;

  constructor(
    private readonly storage: AuditStorage,
    private readonly now: () => Date,
  ) {}

  /**
   * Append a batch in one transaction: each unit's store write first (in its own savepoint), then
   * the entries of the units whose write held, in order. Resolves with each unit's outcome.
   */
  commit(units: readonly AppendUnit[]): Promise<UnitOutcome[]> {
    return this.write(async (tx, append) => {
      const failed = new Map<number, unknown>();
      for (const [i, u] of units.entries()) {
        if (u.work === undefined) continue;
        try {
          await tx.inSavepoint(u.work);
        } catch (error) {
          failed.set(i, error);
        }
      }
      const leaves = units.filter((_, i) => !failed.has(i)).map((u) => u.leaf);
      let next = leaves.length > 0 ? await append(leaves) : 0;
      return units.map((_, i) => (failed.has(i) ? { error: failed.get(i) } : { index: next++ }));
    });
  }

  /** Run `work` in one transaction holding the sequencer lock; `append` integrates leaves in it. */
  async write<T>(work: (tx: AuditWriteTx, append: AppendLeaves) => Promise<T>): Promise<T> {
    let edge: CompactRange | undefined;
    // Read before the transaction (SQLite has one connection, held by it): checkpoints only grow, and
    // one signed meanwhile covers entries already in the state this transaction locks.
    const signed = (await this.storage.latestCheckpoint())?.size ?? 0;
    const result = await this.storage.write(async (tx) => {
      const state = await tx.lockState();
      const append: AppendLeaves = async (leaves) => {
        refuseBehindCheckpoint(state.size, signed);
        edge ??= await this.edgeAt(tx, state);
        const first = edge.size;
        await this.integrate(tx, edge, leaves);
        return first;
      };
      return work(tx, append);
    });
    if (edge !== undefined) this.edge = edge;
    return result;
  }

  private async edgeAt(tx: AuditWriteTx, state: { size: number; root: Buffer }): Promise<CompactRange> {
    if (this.edge !== undefined && this.edge.size === state.size && this.edge.root().equals(state.root))
      return this.edge.clone();
    const edge = CompactRange.fromNodes(state.size, await tx.getNodes(rangeNodes(0, state.size)));
    if (!edge.root().equals(state.root)) {
      throw new EdgeguardError(
        'EG_AUDIT_INCONSISTENT',
        `the stored tree of ${state.size} entries does not hash to the recorded root; the audit tables were altered. Run \`edgeguard audit verify --full\` and refuse further appends until it is explained.`,
      );
    }
    return edge;
  }

  private async integrate(tx: AuditWriteTx, edge: CompactRange, leaves: readonly Buffer[]): Promise<void> {
    const nodes: Array<{ level: number; idx: number; hash: string }> = [];
    const entries = leaves.map((leaf) => {
      const idx = edge.size;
      edge.append(hashLeaf(leaf), (id, hash) =>
        nodes.push({ level: id.level, idx: id.index, hash: hash.toString('hex') }),
      );
      return { idx, leaf: leaf.toString('utf8') };
    });
    await tx.insertEntries(entries);
    await tx.insertNodes(nodes);
    await tx.setState({ size: edge.size, root: edge.root() }, this.now().toISOString());
  }
}
