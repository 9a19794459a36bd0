/**
 * The client side of the log: fetch a checkpoint and proofs from wherever the log is (the server's
 * HTTPS API, or its store directly), and believe nothing until it verifies locally under the
 * pinned log key.
 */
import { EdgeguardError } from '../errors/index.ts';
import { openCheckpoint, type OpenedCheckpoint } from './checkpoint.ts';
import { decodeLogLeaf, type LogLeaf } from './events.ts';
import type { AuditLog } from './log.ts';
import { hashLeaf, verifyInclusion } from './merkle.ts';
import type { NoteVerifier } from './note.ts';

export interface LogReader {
  /** Where the log is, for messages. */
  readonly where: string;
  /** The latest signed checkpoint (signed-note text). */
  checkpoint(): Promise<string>;
  /** Leaf bytes of entry `index` and its inclusion proof in the tree of `size`. */
  inclusionProof(index: number, size: number): Promise<{ leaf: Uint8Array; proof: Uint8Array[] }>;
  consistencyProof(size1: number, size2: number): Promise<Uint8Array[]>;
}

/** A reader straight over the store (same machine or same database as the server). */
export function storeLogReader(log: AuditLog, where: string): LogReader {
  return {
    where,
    async checkpoint() {
      const cp = await log.latestCheckpoint();
      if (cp === undefined)
        throw new EdgeguardError(
          'EG_NOT_FOUND',
          `the log at ${where} has not signed a checkpoint yet; start the server (it signs every 500 ms) or append an event first.`,
        );
      return cp.note;
    },
    async inclusionProof(index, size) {
      const p = await log.inclusionProof(index, size);
      return { leaf: Buffer.from(p.leaf, 'utf8'), proof: p.proof };
    },
    consistencyProof: (a, b) => log.consistencyProof(a, b),
  };
}

export async function fetchVerifiedCheckpoint(reader: LogReader, logKey: NoteVerifier): Promise<OpenedCheckpoint> {
  return openCheckpoint(await reader.checkpoint(), logKey);
}

export interface ProvenEntry {
  checkpoint: OpenedCheckpoint;
  index: number;
  leaf: LogLeaf;
  leafHash: Buffer;
  proof: Buffer[];
}

/**
 * Fetch entry `index`, its inclusion proof and the latest checkpoint; verify the checkpoint's
 * signature and the proof (RFC 9162 2.1.3.2). A proof that does not verify is an alarm
 * (EG_AUDIT_INCONSISTENT): the log serves an entry that is not in the tree it signed.
 */
export async function proveEntry(reader: LogReader, logKey: NoteVerifier, index: number): Promise<ProvenEntry> {
  const checkpoint = await fetchVerifiedCheckpoint(reader, logKey);
  const size = checkpoint.checkpoint.size;
  if (!Number.isSafeInteger(index) || index < 0)
    throw new EdgeguardError('EG_USAGE', `entry id ${index} is not a log index (0, 1, 2, ...).`);
  if (index >= size) {
    throw new EdgeguardError(
      'EG_NOT_FOUND',
      `entry ${index} is not covered by the latest signed checkpoint (size ${size}); wait a second for the next checkpoint and retry.`,
    );
  }
  const { leaf: leafBytes, proof } = await reader.inclusionProof(index, size);
  const leafHash = hashLeaf(leafBytes);
  if (!verifyInclusion(leafHash, index, size, proof, checkpoint.checkpoint.rootHash)) {
    throw new EdgeguardError(
      'EG_AUDIT_INCONSISTENT',
      `the inclusion proof of entry ${index} does not verify against the checkpoint of size ${size} signed by ${logKey.name}: the entry was altered or the log forked.`,
      {
        details: { checkpoint: checkpoint.signedNote, leaf: Buffer.from(leafBytes).toString('base64') },
      },
    );
  }
  return { checkpoint, index, leaf: decodeLogLeaf(leafBytes), leafHash, proof: proof.map((p) => Buffer.from(p)) };
}
