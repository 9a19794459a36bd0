/**
 * The server's audit log: an RFC 9162 Merkle tree over audit entries, kept in the control plane's
 * store (SQLite or PostgreSQL) and published as C2SP signed checkpoints. This file is the log's
 * lifecycle and public face; its parts live beside it:
 *
 *   sequencer.ts             group commit of server events (one transaction per batch)
 *   tree-writer.ts           integration under the sequencer lock (audit_state row)
 *   device-ingest.ts         device journals: signatures, chain continuity, gaps
 *   checkpoint-publisher.ts  self-checked checkpoint signing, on a timer or on demand
 *   fsck.ts                  the full consistency check
 *   storage*.ts              the storage interface and its one driver per database
 *
 * Any number of server processes on one database append to one linear log: each batch takes the
 * sequencer lock, gets the indices [size, size + k) and moves the state row to the new size and
 * root in one transaction.
 */
import type { KeyObject } from 'node:crypto';
import { EdgeguardError } from '../errors/index.ts';
import type { Store } from '../store/index.ts';
import { CheckpointPublisher } from './checkpoint-publisher.ts';
import { DeviceIngest, type DeviceAppendResult } from './device-ingest.ts';
import { encodeLogLeaf, parseAuditEvent, type AuditEvent } from './events.ts';
import { checkConsistency, type ConsistencyReport } from './fsck.ts';
import { checkLeafSize } from './leaf.ts';
import { consistencyProof, hashLeaf, inclusionProof, type NodeId, type NodeSource } from './merkle.ts';
import { noteVerifier, type NoteSigner, type NoteVerifier } from './note.ts';
import { AppendSequencer, type AppendResult } from './sequencer.ts';
import { openAuditStorage } from './storage-open.ts';
import type { AuditStorage, StoreWork, StoredCheckpoint } from './storage.ts';
import { TreeWriter, storeBehindCheckpoint } from './tree-writer.ts';

export { MAX_LEAF_BYTES } from './leaf.ts';
export { deviceLeaf, type DeviceAppendResult } from './device-ingest.ts';
export type { AppendResult } from './sequencer.ts';
export type { ConsistencyReport } from './fsck.ts';
export type { StoreWork, StoredCheckpoint } from './storage.ts';

/** Nodes at this level and above (covering >= 64 entries each) are cached for serving proofs. */
const CACHE_MIN_LEVEL = 6;
const NODE_CACHE_MAX = 200_000;
const DEFAULT_CHECKPOINT_INTERVAL_MS = 500;

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

export interface InclusionProofResult {
  index: number;
  size: number;
  leaf: string;
  leafHash: Buffer;
  proof: Buffer[];
}

export class AuditLog implements NodeSource {
  readonly origin: string;
  readonly verifier: NoteVerifier;
  private readonly now: () => Date;
  private readonly sequencer: AppendSequencer;
  private readonly devices: DeviceIngest;
  private readonly checkpoints: CheckpointPublisher;
  private readonly nodeCache = new Map<string, Buffer>();
  private closed = false;

  private constructor(
    private readonly storage: AuditStorage,
    private readonly opts: AuditLogOptions,
  ) {
    const verifier = opts.signer ? noteVerifier(opts.signer.name, opts.signer.publicKey) : opts.verifier;
    if (verifier === undefined)
      throw new EdgeguardError(
        'EG_USAGE',
        'the audit log needs its signing key, or its verifier key to open read-only.',
      );
    this.verifier = verifier;
    this.origin = opts.origin ?? verifier.name;
    this.now = opts.now ?? (() => new Date());
    const writer = new TreeWriter(storage, this.now);
    this.sequencer = new AppendSequencer((units) => writer.commit(units), opts.maxBatch ?? 1024, opts.maxDelayMs ?? 2);
    this.devices = new DeviceIngest(writer, this.origin, this.now);
    this.checkpoints = new CheckpointPublisher(storage, {
      signer: opts.signer,
      verifier,
      origin: this.origin,
      now: this.now,
      onAlarm: opts.onAlarm,
    });
  }

  /** Open the log on a store (whose migrations created the audit tables). */
  static async open(store: Store, opts: AuditLogOptions): Promise<AuditLog> {
    const storage = await openAuditStorage(store);
    const log = new AuditLog(storage, opts);
    try {
      await storage.readState();
    } catch (e) {
      await storage.close();
      throw new EdgeguardError(
        'EG_AUDIT',
        `the store at ${store.where} has no audit tables; it was not opened through Store.open, which migrates it.`,
        { cause: e },
      );
    }
    if (log.signsOnTimer) log.checkpoints.start(opts.checkpointIntervalMs ?? DEFAULT_CHECKPOINT_INTERVAL_MS);
    return log;
  }

  private get signsOnTimer(): boolean {
    return this.opts.signer !== undefined && (this.opts.checkpointIntervalMs ?? DEFAULT_CHECKPOINT_INTERVAL_MS) > 0;
  }

  /** Stop the timer, commit what is pending, sign a last checkpoint. The store stays open. */
  async close(): Promise<void> {
    await this.checkpoints.stop();
    await this.flush();
    this.closed = true;
    if (this.signsOnTimer) {
      // What was appended last is covered by a signed checkpoint before the process goes.
      await this.checkpoints.publish().catch((e: unknown) => {
        if (e instanceof EdgeguardError) this.opts.onAlarm?.(e);
      });
    }
    await this.storage.close();
  }

  // ---------------------------------------------------------------- appending

  /** Append one server-side event; resolves once it is durably in the tree (not yet signed). */
  append(event: AuditEvent): Promise<AppendResult> {
    if (this.closed) return Promise.reject(new EdgeguardError('EG_AUDIT', 'the audit log is closed.'));
    try {
      return this.sequencer.enqueue(this.serverLeaf(event));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * Append one server-side event together with the store write it records (`work`, on the same
   * database): both in the batch's transaction, so they share one commit. If `work` fails, the
   * event is not appended and this rejects with its error; other appends of the batch go on.
   */
  appendWith(event: AuditEvent, work: StoreWork): Promise<AppendResult> {
    if (this.closed) return Promise.reject(new EdgeguardError('EG_AUDIT', 'the audit log is closed.'));
    try {
      return this.sequencer.enqueue(this.serverLeaf(event), work);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  appendMany(events: readonly AuditEvent[]): Promise<AppendResult[]> {
    return Promise.all(events.map((e) => this.append(e)));
  }

  /** Wait until everything appended so far is committed. */
  flush(): Promise<void> {
    return this.sequencer.flush();
  }

  private serverLeaf(event: AuditEvent): Buffer {
    const leaf = { v: 1 as const, event: parseAuditEvent(event), origin: { kind: 'server' as const } };
    return checkLeafSize(encodeLogLeaf({ ...leaf, loggedAt: this.now().toISOString() }));
  }

  /**
   * Append entries forwarded from a device's journal (encoded records, oldest first). Every
   * signature must verify under the device's key (else EG_SIGNATURE_INVALID and nothing is
   * logged); chain breaks are logged as audit.journal_gap events (device-ingest.ts).
   */
  appendDeviceRecords(
    deviceId: string,
    publicKey: KeyObject,
    records: readonly Uint8Array[],
  ): Promise<DeviceAppendResult> {
    return this.devices.append(deviceId, publicKey, records);
  }

  /** The device's last logged journal entry (for the agent to resume forwarding after it). */
  deviceHead(deviceId: string): Promise<{ seq: number; hash: string } | undefined> {
    return this.storage.deviceHead(deviceId);
  }

  // ---------------------------------------------------------------- checkpoints

  /**
   * Sign a checkpoint of the current tree unless the latest one already covers it. Fails with
   * EG_AUDIT_INCONSISTENT (and signs nothing) if the stored tree is not the one the state row and
   * the last checkpoint describe.
   */
  publishCheckpoint(): Promise<StoredCheckpoint> {
    return this.checkpoints.publish();
  }

  latestCheckpoint(): Promise<StoredCheckpoint | undefined> {
    return this.storage.latestCheckpoint();
  }

  checkpointAt(size: number): Promise<StoredCheckpoint | undefined> {
    return this.storage.checkpointAt(size);
  }

  /** Current integrated size (may be ahead of the latest checkpoint). */
  async size(): Promise<number> {
    return (await this.storage.readState()).size;
  }

  // ---------------------------------------------------------------- reading and proofs

  /**
   * Node reads for the proofs the log serves. Complete subtrees never change once written, so the
   * upper levels (a small fraction of all nodes, read by almost every proof) are kept in memory.
   * The checks before signing and `checkConsistency` read the store itself, so a row altered
   * behind the process's back is still caught there.
   */
  async getNodes(ids: readonly NodeId[]): Promise<Uint8Array[]> {
    const out: Array<Uint8Array | undefined> = ids.map((id) =>
      id.level >= CACHE_MIN_LEVEL ? this.nodeCache.get(`${id.level}/${id.index}`) : undefined,
    );
    const missing = ids.filter((_, i) => out[i] === undefined);
    if (missing.length > 0) {
      const fetched = await this.storage.proofNodes.getNodes(missing);
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

  private cacheNode(id: NodeId, hash: Uint8Array): void {
    if (this.nodeCache.size >= NODE_CACHE_MAX) {
      const oldest = this.nodeCache.keys().next().value;
      if (oldest !== undefined) this.nodeCache.delete(oldest);
    }
    this.nodeCache.set(`${id.level}/${id.index}`, Buffer.from(hash));
  }

  async getEntry(index: number): Promise<string> {
    const leaf = await this.storage.getEntry(index);
    if (leaf === undefined) throw new EdgeguardError('EG_NOT_FOUND', `log entry ${index} does not exist.`);
    return leaf;
  }

  async getEntries(start: number, end: number): Promise<string[]> {
    const rows = await this.storage.entriesFrom(start, Math.max(0, end - start), end);
    rows.forEach((r, i) => {
      if (r.idx !== start + i)
        throw new EdgeguardError(
          'EG_AUDIT_INCONSISTENT',
          `log entry ${start + i} is missing from the store; the audit tables were altered.`,
        );
    });
    if (rows.length !== end - start)
      throw new EdgeguardError('EG_NOT_FOUND', `log entries ${start}..${end - 1} are not all in the log.`);
    return rows.map((r) => r.value);
  }

  /** Inclusion proof of entry `index` in the tree of `size` (default: the latest checkpoint). */
  async inclusionProof(index: number, size?: number): Promise<InclusionProofResult> {
    const treeSize = size ?? (await this.latestCheckpoint())?.size ?? 0;
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
    const valid = Number.isSafeInteger(level) && level >= 0 && level <= 7 && Number.isSafeInteger(index) && index >= 0;
    if (!valid || width < 1 || width > 256) {
      throw new EdgeguardError('EG_USAGE', 'a tile needs level 0..7, a non-negative index and a width of 1..256.');
    }
    const rows = await this.storage.nodesAtLevel(level * 8, index * 256, index * 256 + width);
    if (rows.length !== width)
      throw new EdgeguardError('EG_NOT_FOUND', `tile ${level}/${index} has ${rows.length} of ${width} hashes so far.`);
    return Buffer.concat(rows.map((r) => Buffer.from(r.value, 'hex')));
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

  /** Sizes when the store holds fewer entries than the latest signed checkpoint (appends are refused then). */
  async storeBehindCheckpoint(): Promise<{ stored: number; signed: number } | undefined> {
    return storeBehindCheckpoint(this.storage, (await this.storage.readState()).size);
  }

  /** The full consistency check (fsck.ts): every entry, node, checkpoint and the state row. */
  checkConsistency(opts: { pageSize?: number; maxProblems?: number } = {}): Promise<ConsistencyReport> {
    return checkConsistency(this.storage, this, opts);
  }
}
