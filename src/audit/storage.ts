/**
 * What the audit log needs from a database, and nothing more: the log's logic (sequencing, device
 * ingestion, checkpoints, checks) is written once against this interface, and each database has
 * one driver (storage-sqlite.ts, storage-postgres.ts) with one query path through kysely.
 */
import type { Transaction } from 'kysely';
import type { NodeId, NodeSource } from './merkle.ts';

/**
 * A write of another part of the store (the record an audit event is about), committed in the
 * audit batch's transaction. The transaction is the store's own (every table is in the same
 * database); the caller narrows it to its tables.
 */
export type StoreWork = (trx: Transaction<unknown>) => Promise<void>;

export interface TreeState {
  size: number;
  root: Buffer;
}

export interface StoredCheckpoint {
  size: number;
  root: Buffer;
  note: string;
}

export interface DeviceHeadRow {
  seq: number;
  hash: string;
}

export interface IndexedRow {
  idx: number;
  value: string;
}

/** Writes, inside one transaction that holds the log's sequencer lock. */
export interface AuditWriteTx {
  /** Take the sequencer lock (the audit_state row) and read the tree state under it. */
  lockState(): Promise<TreeState>;
  getNodes(ids: readonly NodeId[]): Promise<Uint8Array[]>;
  insertEntries(rows: ReadonlyArray<{ idx: number; leaf: string }>): Promise<void>;
  insertNodes(rows: ReadonlyArray<{ level: number; idx: number; hash: string }>): Promise<void>;
  setState(state: TreeState, updatedAt: string): Promise<void>;
  deviceHead(deviceId: string): Promise<DeviceHeadRow | undefined>;
  deviceEntry(deviceId: string, seq: number): Promise<{ idx: number; hash: string } | undefined>;
  insertDeviceEntries(
    rows: ReadonlyArray<{ device_id: string; seq: number; idx: number; hash: string }>,
  ): Promise<void>;
  setDeviceHead(deviceId: string, head: DeviceHeadRow, updatedAt: string): Promise<void>;
  /** Run `work` in a savepoint of this transaction: if it fails, it alone is rolled back (and it rejects). */
  inSavepoint(work: StoreWork): Promise<void>;
}

export interface AuditStorage {
  /** Where the log lives, without credentials, for messages. */
  readonly where: string;
  /** Node reads from the store itself (the checks before signing read these, never a cache). */
  readonly nodes: NodeSource;
  /** Node reads for serving proofs (SQLite: a read-only connection of its own). */
  readonly proofNodes: NodeSource;
  write<T>(work: (tx: AuditWriteTx) => Promise<T>): Promise<T>;
  readState(): Promise<TreeState>;
  getEntry(index: number): Promise<string | undefined>;
  /** Entries from `start` on, in index order, at most `limit` of them, below `end` when given. */
  entriesFrom(start: number, limit: number, end?: number): Promise<IndexedRow[]>;
  /** Hashes stored at `level` with lo <= idx < hi, in index order. */
  nodesAtLevel(level: number, lo: number, hi: number): Promise<IndexedRow[]>;
  deviceHead(deviceId: string): Promise<DeviceHeadRow | undefined>;
  latestCheckpoint(): Promise<StoredCheckpoint | undefined>;
  checkpointAt(size: number): Promise<StoredCheckpoint | undefined>;
  checkpoints(): Promise<StoredCheckpoint[]>;
  /** Store a signed checkpoint unless one of that size exists; returns the one stored. */
  insertCheckpoint(cp: StoredCheckpoint, createdAt: string): Promise<StoredCheckpoint>;
  close(): Promise<void>;
}
