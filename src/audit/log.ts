/**
 * The server's audit log: an RFC 9162 Merkle tree over audit entries, kept in the control plane's
 * store (SQLite or PostgreSQL) and published as C2SP signed checkpoints.
 *
 * Sequencing and integration happen in one transaction per batch. The transaction first locks
 * the single `audit_state` row (SELECT ... FOR UPDATE on PostgreSQL; a write to it on SQLite, which
 * takes the database write lock), so any number of server processes on one database append to
 * one linear log: the batch gets the indices [size, size + k), its leaves and every newly
 * completed subtree hash are inserted, and the state row moves to the new size and root. Appends
 * from one process are grouped (group commit): while one batch commits, the next one fills.
 *
 * Checkpoints are signed by a timer (or on demand) after a self-check: the root recomputed from
 * the stored nodes must equal the state row, and the tree must be provably consistent with the
 * last checkpoint signed. The log therefore never signs a checkpoint inconsistent with an earlier
 * one, even if its tables were edited; it raises EG_AUDIT_INCONSISTENT instead.
 */
import type { KeyObject } from 'node:crypto';
import BetterSqlite3 from 'better-sqlite3';
import { sql, type Kysely, type Transaction } from 'kysely';
import { EdgeguardError } from '../errors/index.ts';
import type { Store } from '../store/index.ts';
import { openCheckpoint, signCheckpoint } from './checkpoint.ts';
import { encodeLogLeaf, parseAuditEvent, type AuditEvent, type LogLeaf } from './events.ts';
import {
  chainBreak,
  decodeJournalRecord,
  verifyJournalSignature,
  GENESIS_HEAD,
  type JournalEntry,
  type JournalGap,
} from './journal.ts';
import {
  CompactRange,
  EMPTY_ROOT,
  consistencyProof,
  hashLeaf,
  inclusionProof,
  rangeNodes,
  treeRoot,
  verifyConsistency,
  type NodeId,
  type NodeSource,
} from './merkle.ts';
import { noteVerifier, type NoteSigner, type NoteVerifier } from './note.ts';
import type { AuditTables } from './schema.ts';

type Db = Kysely<AuditTables>;
type Trx = Transaction<AuditTables>;

/** tlog-tiles entry bundles prefix each entry with a u16 length, so a leaf is at most 65535 bytes. */
export const MAX_LEAF_BYTES = 65535;
const INSERT_CHUNK = 2000;
/** Nodes at this level and above (covering >= 64 entries each) are cached for serving proofs. */
const CACHE_MIN_LEVEL = 6;
const NODE_CACHE_MAX = 200_000;

export interface AuditLogOptions {
  /** The checkpoint signing key; without it the log is read-only (proofs, checks, no signing). */
  signer?: NoteSigner;
  /** The log's verifier key, when opened read-only without the signer. */
  verifier?: NoteVerifier;
  /** Checkpoint origin line; defaults to the signer's key name. */
  origin?: string;
  /** Most entries integrated per transaction. */
  maxBatch?: number;
  /** How long a lone append waits for company before its batch commits. */
  maxDelayMs?: number;
  /** Sign a checkpoint this often when the tree grew; 0 turns the timer off (call publishCheckpoint). */
  checkpointIntervalMs?: number;
  now?: () => Date;
  /** Called when the periodic self-check or signing fails (the timer keeps running). */
  onAlarm?: (e: EdgeguardError) => void;
}

export interface AppendResult {
  index: number;
}

export interface DeviceAppendResult {
  /**
   * Every entry received, in order: its log index ('logged'), the index it was logged at before
   * ('duplicate'), or null when it conflicts with what was logged for its seq ('conflict').
   */
  entries: Array<{ seq: number; index: number | null; status: 'logged' | 'duplicate' | 'conflict' }>;
  /** Breaks of the device's chain found in this batch, each also logged as audit.journal_gap. */
  gaps: JournalGap[];
}

export interface StoredCheckpoint {
  size: number;
  root: Buffer;
  note: string;
}

export interface InclusionProofResult {
  index: number;
  size: number;
  leaf: string;
  leafHash: Buffer;
  proof: Buffer[];
}

export interface ConsistencyReport {
  size: number;
  checkpointsChecked: number;
  problems: string[];
}

interface Pending {
  leaf: Buffer;
  resolve: (r: AppendResult) => void;
  reject: (e: unknown) => void;
}

export class AuditLog implements NodeSource {
  readonly origin: string;
  readonly verifier: NoteVerifier;
  private readonly db: Db;
  private readonly maxBatch: number;
  private readonly maxDelayMs: number;
  private readonly now: () => Date;
  private pending: Pending[] = [];
  private flushing: Promise<void> | undefined;
  private delayTimer: NodeJS.Timeout | undefined;
  private checkpointTimer: NodeJS.Timeout | undefined;
  private publishing: Promise<StoredCheckpoint> | undefined;
  /** The right edge of the tree as this process last integrated it. */
  private edge: CompactRange | undefined;
  private closed = false;
  private readonly nodeCache = new Map<string, Buffer>();
  /** SQLite only: a read-only connection of our own for proof reads, off the store's single connection. */
  private proofReader: BetterSqlite3.Database | undefined;
  private readonly proofStatements = new Map<number, BetterSqlite3.Statement>();

  private constructor(
    private readonly store: Store,
    private readonly opts: AuditLogOptions,
  ) {
    this.db = store.db.withTables<AuditTables>() as unknown as Db;
    const verifier = opts.signer ? noteVerifier(opts.signer.name, opts.signer.publicKey) : opts.verifier;
    if (verifier === undefined)
      throw new EdgeguardError(
        'EG_USAGE',
        'the audit log needs its signing key, or its verifier key to open read-only.',
      );
    this.verifier = verifier;
    this.origin = opts.origin ?? verifier.name;
    this.maxBatch = opts.maxBatch ?? 1024;
    this.maxDelayMs = opts.maxDelayMs ?? 2;
    this.now = opts.now ?? (() => new Date());
  }

  /** Open the log on a store (whose migrations created the audit tables). */
  static async open(store: Store, opts: AuditLogOptions): Promise<AuditLog> {
    const log = new AuditLog(store, opts);
    if (store.dialect === 'sqlite') {
      // An appended entry is acknowledged as durable: in WAL mode only synchronous=FULL syncs the
      // WAL on every commit (NORMAL may lose the last commits on power loss). One connection per
      // store, so this holds for the store's other writers too.
      await sql`pragma synchronous = FULL`.execute(store.db);
    }
    const file = /^sqlite:(.+)$/.exec(store.where)?.[1];
    if (store.dialect === 'sqlite' && file !== undefined && file !== ':memory:') {
      try {
        log.proofReader = new BetterSqlite3(file, { readonly: true, fileMustExist: true });
        log.proofReader.pragma('busy_timeout = 5000');
      } catch {
        log.proofReader = undefined;
      }
    }
    try {
      await log.readState(log.db);
    } catch (e) {
      throw new EdgeguardError(
        'EG_AUDIT',
        `the store at ${store.where} has no audit tables; it was not opened through Store.open, which migrates it.`,
        { cause: e },
      );
    }
    const interval = opts.signer ? (opts.checkpointIntervalMs ?? 500) : 0;
    if (interval > 0) {
      log.checkpointTimer = setInterval(() => {
        log.publishCheckpoint().catch((e: unknown) => {
          const err =
            e instanceof EdgeguardError
              ? e
              : new EdgeguardError('EG_AUDIT', `signing a checkpoint failed (${(e as Error).message}).`, { cause: e });
          opts.onAlarm?.(err);
        });
      }, interval);
      log.checkpointTimer.unref();
    }
    return log;
  }

  /** Stop the timer, commit what is pending, sign a last checkpoint. The store stays open. */
  async close(): Promise<void> {
    if (this.checkpointTimer) clearInterval(this.checkpointTimer);
    await this.flush();
    this.closed = true;
    await this.publishing?.catch(() => undefined);
    if (this.opts.signer && (this.opts.checkpointIntervalMs ?? 500) > 0) {
      // What was appended last is covered by a signed checkpoint before the process goes.
      await this.publishCheckpoint().catch((e: unknown) => {
        if (e instanceof EdgeguardError) this.opts.onAlarm?.(e);
      });
    }
    this.proofReader?.close();
    this.proofReader = undefined;
  }

  // ---------------------------------------------------------------- appending

  /** Append one server-side event; resolves once it is durably in the tree (not yet signed). */
  append(event: AuditEvent): Promise<AppendResult> {
    if (this.closed) return Promise.reject(new EdgeguardError('EG_AUDIT', 'the audit log is closed.'));
    let leaf: Buffer;
    try {
      leaf = this.serverLeaf(event);
    } catch (e) {
      return Promise.reject(e);
    }
    return new Promise<AppendResult>((resolve, reject) => {
      this.pending.push({ leaf, resolve, reject });
      this.schedule();
    });
  }

  appendMany(events: readonly AuditEvent[]): Promise<AppendResult[]> {
    return Promise.all(events.map((e) => this.append(e)));
  }

  /** Wait until everything appended so far is committed. */
  async flush(): Promise<void> {
    while (this.pending.length > 0 || this.flushing) {
      if (!this.flushing) this.startFlush();
      await this.flushing;
    }
  }

  private serverLeaf(event: AuditEvent): Buffer {
    const leaf: LogLeaf = {
      v: 1,
      event: parseAuditEvent(event),
      origin: { kind: 'server' },
      loggedAt: this.now().toISOString(),
    };
    return checkLeafSize(encodeLogLeaf(leaf));
  }

  private schedule(): void {
    if (this.flushing) return;
    if (this.pending.length >= this.maxBatch) {
      this.startFlush();
    } else if (!this.delayTimer) {
      this.delayTimer = setTimeout(() => {
        this.delayTimer = undefined;
        this.startFlush();
      }, this.maxDelayMs);
    }
  }

  private startFlush(): void {
    if (this.flushing) return;
    if (this.delayTimer) {
      clearTimeout(this.delayTimer);
      this.delayTimer = undefined;
    }
    const batch = this.pending.splice(0, this.maxBatch);
    if (batch.length === 0) return;
    this.flushing = this.integrateLeaves(batch.map((p) => p.leaf))
      .then(
        (first) => batch.forEach((p, i) => p.resolve({ index: first + i })),
        (e: unknown) => batch.forEach((p) => p.reject(e)),
      )
      .finally(() => {
        this.flushing = undefined;
        if (this.pending.length > 0) this.startFlush();
      });
  }

  private async integrateLeaves(leaves: Buffer[]): Promise<number> {
    let newEdge: CompactRange | undefined;
    const first = await this.db.transaction().execute(async (trx) => {
      const r = await this.integrate(trx, leaves);
      newEdge = r.edge;
      return r.first;
    });
    this.edge = newEdge;
    return first;
  }

  /** Lock the tree, give `leaves` the next indices, store them and the subtrees they complete. */
  private async integrate(trx: Trx, leaves: readonly Buffer[]): Promise<{ first: number; edge: CompactRange }> {
    const state = await this.lockState(trx);
    let edge: CompactRange;
    if (this.edge !== undefined && this.edge.size === state.size && this.edge.root().equals(state.root)) {
      edge = this.edge.clone();
    } else {
      const ids = rangeNodes(0, state.size);
      edge = CompactRange.fromNodes(state.size, await getNodes(trx, ids));
      if (!edge.root().equals(state.root)) {
        throw new EdgeguardError(
          'EG_AUDIT_INCONSISTENT',
          `the stored tree of ${state.size} entries does not hash to the recorded root; the audit tables were altered. Run \`edgeguard audit verify --full\` and refuse further appends until it is explained.`,
        );
      }
    }
    const nodes: Array<{ level: number; idx: number; hash: string }> = [];
    const entries = leaves.map((leaf, i) => {
      edge.append(hashLeaf(leaf), (id, hash) =>
        nodes.push({ level: id.level, idx: id.index, hash: hash.toString('hex') }),
      );
      return { idx: state.size + i, leaf: leaf.toString('utf8') };
    });
    for (let i = 0; i < entries.length; i += INSERT_CHUNK)
      await trx
        .insertInto('audit_entries')
        .values(entries.slice(i, i + INSERT_CHUNK))
        .execute();
    for (let i = 0; i < nodes.length; i += INSERT_CHUNK)
      await trx
        .insertInto('audit_nodes')
        .values(nodes.slice(i, i + INSERT_CHUNK))
        .execute();
    await trx
      .updateTable('audit_state')
      .set({ size: edge.size, root: edge.root().toString('hex'), updated_at: this.now().toISOString() })
      .where('id', '=', 1)
      .execute();
    return { first: state.size, edge };
  }

  private async lockState(trx: Trx): Promise<{ size: number; root: Buffer }> {
    if (this.store.dialect === 'postgres') {
      const row = await trx
        .selectFrom('audit_state')
        .select(['size', 'root'])
        .where('id', '=', 1)
        .forUpdate()
        .executeTakeFirstOrThrow();
      return { size: Number(row.size), root: Buffer.from(row.root, 'hex') };
    }
    // SQLite: writing first takes the database's write lock for the rest of the transaction.
    await trx
      .updateTable('audit_state')
      .set((eb) => ({ id: eb.ref('id') }))
      .where('id', '=', 1)
      .execute();
    return this.readState(trx);
  }

  private async readState(db: Db | Trx): Promise<{ size: number; root: Buffer }> {
    const row = await db.selectFrom('audit_state').select(['size', 'root']).where('id', '=', 1).executeTakeFirst();
    if (row === undefined)
      throw new EdgeguardError(
        'EG_AUDIT_INCONSISTENT',
        'the audit log state row is missing; the audit tables were altered.',
      );
    return { size: Number(row.size), root: Buffer.from(row.root, 'hex') };
  }

  /**
   * Append entries forwarded from a device's journal (encoded records, oldest first). Every
   * signature must verify under the device's key (else EG_SIGNATURE_INVALID and nothing is
   * logged). The chain must continue the device's last logged entry: entries already logged are
   * recognised as duplicates, a break is logged as an audit.journal_gap event before the entry
   * that shows it, and a rewritten already-logged entry is logged as a gap and not appended.
   */
  async appendDeviceRecords(
    deviceId: string,
    publicKey: KeyObject,
    records: readonly Uint8Array[],
  ): Promise<DeviceAppendResult> {
    const entries: JournalEntry[] = records.map((r, i) => {
      try {
        return decodeJournalRecord(r);
      } catch (e) {
        throw new EdgeguardError(
          'EG_FORMAT',
          `journal record ${i} from device ${deviceId} is malformed: ${(e as Error).message}`,
          { cause: e },
        );
      }
    });
    entries.forEach((e, i) => {
      if (!verifyJournalSignature(e.alg, e.body, e.signature, publicKey)) {
        throw new EdgeguardError(
          'EG_SIGNATURE_INVALID',
          `journal record ${i} (seq ${e.seq}) from device ${deviceId} is not signed by the device's key; nothing from this batch was logged.`,
        );
      }
    });
    let newEdge: CompactRange | undefined;
    const result = await this.db.transaction().execute(async (trx) => {
      await this.lockState(trx);
      const headRow = await trx
        .selectFrom('audit_device_heads')
        .select(['seq', 'hash'])
        .where('device_id', '=', deviceId)
        .executeTakeFirst();
      let head = headRow ? { seq: Number(headRow.seq), hash: Buffer.from(headRow.hash, 'hex') } : GENESIS_HEAD;
      const loggedAt = this.now().toISOString();
      const leaves: Buffer[] = [];
      const plan: Array<{ seq: number; leafAt?: number; duplicateOf?: number; entry: JournalEntry }> = [];
      const gaps: JournalGap[] = [];
      const gapLeaf = (g: JournalGap) =>
        checkLeafSize(
          encodeLogLeaf({
            v: 1,
            event: {
              type: 'audit.journal_gap',
              time: loggedAt,
              actor: { kind: 'server', id: this.origin },
              subject: deviceId,
              outcome: 'failure',
              details: {
                deviceId,
                position: g.position,
                expectedSeq: g.expectedSeq,
                ...(g.foundSeq !== undefined ? { foundSeq: g.foundSeq } : {}),
                reason: g.reason.slice(0, 2000),
              },
            },
            origin: { kind: 'server' },
            loggedAt,
          }),
        );
      for (const [position, e] of entries.entries()) {
        if (e.seq <= head.seq) {
          const prior = await trx
            .selectFrom('audit_device_entries')
            .select(['idx', 'hash'])
            .where('device_id', '=', deviceId)
            .where('seq', '=', e.seq)
            .executeTakeFirst();
          if (prior !== undefined && prior.hash === e.hash.toString('hex')) {
            plan.push({ seq: e.seq, duplicateOf: Number(prior.idx), entry: e });
            continue;
          }
          const g: JournalGap = {
            position,
            expectedSeq: head.seq + 1,
            foundSeq: e.seq,
            kind: 'altered',
            reason: `device ${deviceId} sent seq ${e.seq} again with different contents: its journal was rewritten after it was logged`,
          };
          gaps.push(g);
          leaves.push(gapLeaf(g));
          plan.push({ seq: e.seq, entry: e });
          continue;
        }
        // Signatures were verified above; here only the chain.
        const g = chainBreak(e, head, position);
        if (g !== undefined) {
          gaps.push(g);
          leaves.push(gapLeaf(g));
        }
        plan.push({ seq: e.seq, leafAt: leaves.length, entry: e });
        leaves.push(checkLeafSize(encodeLogLeaf(deviceLeaf(deviceId, e, loggedAt))));
        head = { seq: e.seq, hash: e.hash };
      }
      const { first, edge } = leaves.length > 0 ? await this.integrate(trx, leaves) : { first: 0, edge: undefined };
      newEdge = edge;
      const rows = plan
        .filter((p) => p.leafAt !== undefined)
        .map((p) => ({
          device_id: deviceId,
          seq: p.seq,
          idx: first + (p.leafAt as number),
          hash: p.entry.hash.toString('hex'),
        }));
      for (let i = 0; i < rows.length; i += INSERT_CHUNK)
        await trx
          .insertInto('audit_device_entries')
          .values(rows.slice(i, i + INSERT_CHUNK))
          .execute();
      if (rows.length > 0) {
        const headValues = { seq: head.seq, hash: head.hash.toString('hex'), updated_at: loggedAt };
        await trx
          .insertInto('audit_device_heads')
          .values({ device_id: deviceId, ...headValues })
          .onConflict((oc) => oc.column('device_id').doUpdateSet(headValues))
          .execute();
      }
      return {
        entries: plan.map((p) =>
          p.leafAt !== undefined
            ? { seq: p.seq, index: first + p.leafAt, status: 'logged' as const }
            : p.duplicateOf !== undefined
              ? { seq: p.seq, index: p.duplicateOf, status: 'duplicate' as const }
              : { seq: p.seq, index: null, status: 'conflict' as const },
        ),
        gaps,
      };
    });
    if (newEdge) this.edge = newEdge;
    return result;
  }

  /** The device's last logged journal entry (for the agent to resume forwarding after it). */
  async deviceHead(deviceId: string): Promise<{ seq: number; hash: string } | undefined> {
    const row = await this.db
      .selectFrom('audit_device_heads')
      .select(['seq', 'hash'])
      .where('device_id', '=', deviceId)
      .executeTakeFirst();
    return row ? { seq: Number(row.seq), hash: row.hash } : undefined;
  }

  // ---------------------------------------------------------------- checkpoints

  /**
   * Sign a checkpoint of the current tree unless the latest one already covers it. Fails with
   * EG_AUDIT_INCONSISTENT (and signs nothing) if the stored tree is not the one the state row and
   * the last checkpoint describe.
   */
  publishCheckpoint(): Promise<StoredCheckpoint> {
    if (this.publishing) return this.publishing;
    this.publishing = this.publishNow().finally(() => {
      this.publishing = undefined;
    });
    return this.publishing;
  }

  private async publishNow(): Promise<StoredCheckpoint> {
    // The last checkpoint first, then the state: the state only grows, so another replica signing
    // in between cannot make the state look older than a checkpoint (no false rollback alarm).
    const last = await this.latestCheckpoint();
    const state = await this.readState(this.db);
    if (last !== undefined && last.size === state.size && last.root.equals(state.root)) return last;
    if (last !== undefined) {
      // Every checkpoint of one log carries one origin under one key: a replica configured with
      // another key or origin must not start a second, unverifiable line of checkpoints.
      try {
        openCheckpoint(last.note, this.verifier, this.origin);
      } catch (e) {
        throw new EdgeguardError(
          'EG_AUDIT',
          `the log's last checkpoint (size ${last.size}) was not signed by this server's log key for origin "${this.origin}"; every replica must use the same audit-log.key and origin.`,
          { cause: e },
        );
      }
    }
    if (last !== undefined && last.size >= state.size) {
      throw new EdgeguardError(
        'EG_AUDIT_INCONSISTENT',
        `the log state (size ${state.size}, root ${state.root.toString('hex').slice(0, 16)}...) is behind or beside its last signed checkpoint (size ${last.size}); the audit tables were rolled back or altered.`,
      );
    }
    const root = await treeRoot(this.storeNodes, state.size);
    if (!root.equals(state.root)) {
      throw new EdgeguardError(
        'EG_AUDIT_INCONSISTENT',
        `the stored tree nodes for size ${state.size} do not hash to the recorded root; the audit tables were altered.`,
      );
    }
    if (last !== undefined) {
      const proof = await consistencyProof(this.storeNodes, last.size, state.size);
      if (!verifyConsistency(last.size, state.size, proof, last.root, root)) {
        throw new EdgeguardError(
          'EG_AUDIT_INCONSISTENT',
          `the stored tree of size ${state.size} is not consistent with the checkpoint signed at size ${last.size}; entries were altered or removed.`,
        );
      }
    }
    const signer = this.opts.signer;
    if (signer === undefined)
      throw new EdgeguardError(
        'EG_USAGE',
        'this audit log was opened read-only (no signing key); the server signs checkpoints.',
      );
    const note = signCheckpoint({ origin: this.origin, size: state.size, rootHash: root, extensions: [] }, signer);
    await this.db
      .insertInto('audit_checkpoints')
      .values({ size: state.size, root: root.toString('hex'), note, created_at: this.now().toISOString() })
      .onConflict((oc) => oc.column('size').doNothing())
      .execute();
    const stored = await this.db
      .selectFrom('audit_checkpoints')
      .select(['size', 'root', 'note'])
      .where('size', '=', state.size)
      .executeTakeFirstOrThrow();
    if (stored.root !== root.toString('hex')) {
      throw new EdgeguardError(
        'EG_AUDIT_INCONSISTENT',
        `another writer stored a different root for size ${state.size}; two log instances disagree.`,
      );
    }
    return { size: state.size, root, note: stored.note };
  }

  async latestCheckpoint(): Promise<StoredCheckpoint | undefined> {
    const row = await this.db
      .selectFrom('audit_checkpoints')
      .select(['size', 'root', 'note'])
      .orderBy('size', 'desc')
      .limit(1)
      .executeTakeFirst();
    return row ? { size: Number(row.size), root: Buffer.from(row.root, 'hex'), note: row.note } : undefined;
  }

  async checkpointAt(size: number): Promise<StoredCheckpoint | undefined> {
    const row = await this.db
      .selectFrom('audit_checkpoints')
      .select(['size', 'root', 'note'])
      .where('size', '=', size)
      .executeTakeFirst();
    return row ? { size: Number(row.size), root: Buffer.from(row.root, 'hex'), note: row.note } : undefined;
  }

  /** Current integrated size (may be ahead of the latest checkpoint). */
  async size(): Promise<number> {
    return (await this.readState(this.db)).size;
  }

  // ---------------------------------------------------------------- reading and proofs

  /**
   * Node reads for the proofs the log serves. Complete subtrees never change once written, so the
   * upper levels (a small fraction of all nodes, read by almost every proof) are kept in memory.
   * The checks before signing and `checkConsistency` read the store itself (`storeNodes`), so a
   * row altered behind the process's back is still caught there.
   */
  async getNodes(ids: readonly NodeId[]): Promise<Uint8Array[]> {
    const out: Array<Uint8Array | undefined> = ids.map((id) =>
      id.level >= CACHE_MIN_LEVEL ? this.nodeCache.get(`${id.level}/${id.index}`) : undefined,
    );
    const missing = ids.filter((_, i) => out[i] === undefined);
    if (missing.length > 0) {
      const fetched = this.proofReader ? this.readNodesSync(missing) : await getNodes(this.db, missing);
      let k = 0;
      ids.forEach((id, i) => {
        if (out[i] !== undefined) return;
        const h = fetched[k++] as Uint8Array;
        out[i] = h;
        if (id.level >= CACHE_MIN_LEVEL) this.cacheNode(id, h);
      });
    }
    return out as Uint8Array[];
  }

  private readNodesSync(ids: readonly NodeId[]): Uint8Array[] {
    const unique = [...new Map(ids.map((id) => [`${id.level}/${id.index}`, id])).values()];
    const stmt = this.proofStatement(
      unique.length,
      `select level, idx, hash from audit_nodes where ${unique.map(() => '(level = ? and idx = ?)').join(' or ')}`,
    );
    const rows = stmt.all(...unique.flatMap((id) => [id.level, id.index])) as Array<{
      level: number;
      idx: number;
      hash: string;
    }>;
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

  private proofStatement(key: number, text: string): BetterSqlite3.Statement {
    let stmt = this.proofStatements.get(key);
    if (stmt === undefined) {
      stmt = (this.proofReader as BetterSqlite3.Database).prepare(text);
      this.proofStatements.set(key, stmt);
    }
    return stmt;
  }

  private readonly storeNodes: NodeSource = { getNodes: (ids) => getNodes(this.db, ids) };

  private cacheNode(id: NodeId, hash: Uint8Array): void {
    if (this.nodeCache.size >= NODE_CACHE_MAX) {
      const oldest = this.nodeCache.keys().next().value;
      if (oldest !== undefined) this.nodeCache.delete(oldest);
    }
    this.nodeCache.set(`${id.level}/${id.index}`, Buffer.from(hash));
  }

  async getEntry(index: number): Promise<string> {
    const row = this.proofReader
      ? (this.proofStatement(-1, 'select leaf from audit_entries where idx = ?').get(index) as
          { leaf: string } | undefined)
      : await this.db.selectFrom('audit_entries').select('leaf').where('idx', '=', index).executeTakeFirst();
    if (row === undefined) throw new EdgeguardError('EG_NOT_FOUND', `log entry ${index} does not exist.`);
    return row.leaf;
  }

  async getEntries(start: number, end: number): Promise<string[]> {
    const rows = await this.db
      .selectFrom('audit_entries')
      .select(['idx', 'leaf'])
      .where('idx', '>=', start)
      .where('idx', '<', end)
      .orderBy('idx')
      .execute();
    rows.forEach((r, i) => {
      if (Number(r.idx) !== start + i)
        throw new EdgeguardError(
          'EG_AUDIT_INCONSISTENT',
          `log entry ${start + i} is missing from the store; the audit tables were altered.`,
        );
    });
    if (rows.length !== end - start)
      throw new EdgeguardError('EG_NOT_FOUND', `log entries ${start}..${end - 1} are not all in the log.`);
    return rows.map((r) => r.leaf);
  }

  /** Inclusion proof of entry `index` in the tree of `size` (default: the latest checkpoint). */
  async inclusionProof(index: number, size?: number): Promise<InclusionProofResult> {
    let treeSize = size;
    if (treeSize === undefined) {
      const cp = await this.latestCheckpoint();
      treeSize = cp?.size ?? 0;
    }
    if (!Number.isSafeInteger(index) || index < 0 || index >= treeSize) {
      throw new EdgeguardError(
        'EG_NOT_FOUND',
        `entry ${index} is not covered by a signed checkpoint of size ${treeSize} yet; wait for the next checkpoint (about a second) and retry.`,
      );
    }
    const [leaf, proof] = await Promise.all([this.getEntry(index), inclusionProof(this, index, treeSize)]);
    return { index, size: treeSize, leaf, leafHash: hashLeaf(Buffer.from(leaf, 'utf8')), proof };
  }

  async consistencyProof(size1: number, size2: number): Promise<Buffer[]> {
    const current = await this.size();
    if (size2 > current)
      throw new EdgeguardError('EG_NOT_FOUND', `the log has ${current} entries, fewer than ${size2}.`);
    return consistencyProof(this, size1, size2);
  }

  /**
   * C2SP tlog-tiles hash tile: level L, index N holds the hashes of the nodes at tree level 8L
   * with indices N*256 .. N*256+width-1 (width 256 for a full tile).
   */
  async readTile(level: number, index: number, width = 256): Promise<Buffer> {
    if (
      !Number.isSafeInteger(level) ||
      level < 0 ||
      level > 7 ||
      !Number.isSafeInteger(index) ||
      index < 0 ||
      width < 1 ||
      width > 256
    ) {
      throw new EdgeguardError('EG_USAGE', 'a tile needs level 0..7, a non-negative index and a width of 1..256.');
    }
    const nodeLevel = level * 8;
    const start = index * 256;
    const rows = await this.db
      .selectFrom('audit_nodes')
      .select(['idx', 'hash'])
      .where('level', '=', nodeLevel)
      .where('idx', '>=', start)
      .where('idx', '<', start + width)
      .orderBy('idx')
      .execute();
    if (rows.length !== width)
      throw new EdgeguardError('EG_NOT_FOUND', `tile ${level}/${index} has ${rows.length} of ${width} hashes so far.`);
    return Buffer.concat(rows.map((r) => Buffer.from(r.hash, 'hex')));
  }

  /** C2SP tlog-tiles entry bundle: entries N*256.., each as a u16 big-endian length and the leaf. */
  async readEntryBundle(index: number, width = 256): Promise<Buffer> {
    const leaves = await this.getEntries(index * 256, index * 256 + width);
    return Buffer.concat(
      leaves.flatMap((l) => {
        const b = Buffer.from(l, 'utf8');
        const len = Buffer.alloc(2);
        len.writeUInt16BE(b.length);
        return [len, b];
      }),
    );
  }

  /**
   * The full consistency check: rebuild the tree from every stored entry and compare each leaf,
   * every stored subtree hash, every signed checkpoint root and the state row. An edited, deleted
   * or inserted row in any audit table shows up as a problem here.
   */
  async checkConsistency(opts: { pageSize?: number; maxProblems?: number } = {}): Promise<ConsistencyReport> {
    const pageSize = opts.pageSize ?? 5000;
    const maxProblems = opts.maxProblems ?? 20;
    const problems: string[] = [];
    const report = (p: string) => {
      if (problems.length < maxProblems) problems.push(p);
    };
    const state = await this.readState(this.db);
    const checkpoints = (
      await this.db.selectFrom('audit_checkpoints').select(['size', 'root', 'note']).orderBy('size').execute()
    ).map((r) => ({
      size: Number(r.size),
      root: r.root,
      note: r.note,
    }));
    for (const cp of checkpoints) {
      try {
        const opened = openCheckpoint(cp.note, this.verifier, this.origin);
        if (opened.checkpoint.size !== cp.size || opened.checkpoint.rootHash.toString('hex') !== cp.root)
          report(`checkpoint row ${cp.size} does not match its signed note`);
      } catch (e) {
        report(`checkpoint row ${cp.size} does not carry a valid signature (${(e as Error).message})`);
      }
    }
    let cpAt = 0;
    const edge = new CompactRange();
    const checkRoots = () => {
      while (cpAt < checkpoints.length && (checkpoints[cpAt] as { size: number }).size <= edge.size) {
        const cp = checkpoints[cpAt] as { size: number; root: string };
        if (cp.size === edge.size) {
          const root = edge.size === 0 ? EMPTY_ROOT : edge.root();
          if (root.toString('hex') !== cp.root)
            report(
              `the entries do not hash to the root signed at size ${cp.size}: an entry before index ${cp.size} was altered or removed`,
            );
        } else {
          report(`checkpoint at size ${cp.size} could not be checked because entries are missing`);
        }
        cpAt += 1;
      }
    };
    checkRoots();
    let next = 0;
    for (;;) {
      const rows = await this.db
        .selectFrom('audit_entries')
        .select(['idx', 'leaf'])
        .where('idx', '>=', next)
        .orderBy('idx')
        .limit(pageSize)
        .execute();
      if (rows.length === 0) break;
      const produced: Array<{ id: NodeId; hash: Buffer }> = [];
      for (const r of rows) {
        const idx = Number(r.idx);
        if (idx !== edge.size) {
          report(`log entries ${edge.size}..${idx - 1} are missing from the store`);
          // The tree cannot be rebuilt past a hole: compare what was rebuilt, then stop.
          await this.compareNodes(produced, report);
          return this.finishReport(state, edge, checkpoints.length, problems, true);
        }
        edge.append(hashLeaf(Buffer.from(r.leaf, 'utf8')), (id, hash) => produced.push({ id, hash }));
        checkRoots();
      }
      await this.compareNodes(produced, report);
      next = edge.size;
    }
    return this.finishReport(state, edge, checkpoints.length, problems, false);
  }

  private finishReport(
    state: { size: number; root: Buffer },
    edge: CompactRange,
    checkpoints: number,
    problems: string[],
    holed: boolean,
  ): ConsistencyReport {
    if (!holed) {
      if (edge.size !== state.size)
        problems.push(`the log state says ${state.size} entries but ${edge.size} are stored`);
      else if (!(edge.size === 0 ? EMPTY_ROOT : edge.root()).equals(state.root))
        problems.push(`the stored entries do not hash to the recorded root`);
    }
    return { size: state.size, checkpointsChecked: checkpoints, problems };
  }

  private async compareNodes(
    produced: Array<{ id: NodeId; hash: Buffer }>,
    report: (p: string) => void,
  ): Promise<void> {
    const byLevel = new Map<number, Array<{ id: NodeId; hash: Buffer }>>();
    for (const p of produced) {
      const list = byLevel.get(p.id.level) ?? [];
      list.push(p);
      byLevel.set(p.id.level, list);
    }
    for (const [level, list] of byLevel) {
      const lo = (list[0] as { id: NodeId }).id.index;
      const hi = (list[list.length - 1] as { id: NodeId }).id.index;
      const rows = await this.db
        .selectFrom('audit_nodes')
        .select(['idx', 'hash'])
        .where('level', '=', level)
        .where('idx', '>=', lo)
        .where('idx', '<=', hi)
        .execute();
      const stored = new Map(rows.map((r) => [Number(r.idx), r.hash]));
      for (const p of list) {
        const s = stored.get(p.id.index);
        if (s === undefined) report(`tree node ${level}/${p.id.index} is missing from the store`);
        else if (s !== p.hash.toString('hex')) {
          report(
            level === 0
              ? `log entry ${p.id.index} does not match its stored leaf hash: the entry or its hash was altered`
              : `tree node ${level}/${p.id.index} was altered`,
          );
        }
      }
    }
  }
}

function checkLeafSize(leaf: Buffer): Buffer {
  if (leaf.length > MAX_LEAF_BYTES)
    throw new EdgeguardError(
      'EG_INPUT',
      `an audit entry is ${leaf.length} bytes; at most ${MAX_LEAF_BYTES} are accepted. Shorten its text fields.`,
    );
  return leaf;
}

export function deviceLeaf(deviceId: string, e: JournalEntry, loggedAt: string): LogLeaf {
  return {
    v: 1,
    event: e.event,
    origin: {
      kind: 'device',
      device: {
        deviceId,
        seq: e.seq,
        prev: e.prev.toString('hex'),
        timeMs: e.timeMs,
        alg: e.alg,
        sig: e.signature.toString('base64'),
      },
    },
    loggedAt,
  };
}

async function getNodes(db: Db | Trx, ids: readonly NodeId[]): Promise<Uint8Array[]> {
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
