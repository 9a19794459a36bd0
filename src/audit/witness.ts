/**
 * A witness (in the sense of C2SP tlog-witness, without cosigning): it remembers the last
 * checkpoint it verified and accepts a new one only if the log proves it an append-only
 * extension (RFC 9162 2.1.4.2). A smaller tree is a rollback, the same size with another root or
 * a failed proof is a fork; both raise EG_AUDIT_INCONSISTENT carrying both signed checkpoints,
 * which together are evidence that the log misbehaved.
 */
import { rename, writeFile } from 'node:fs/promises';
import { EdgeguardError, FILE_CAPS, fsError, isEdgeguardError, readBoundedText } from '../errors/index.ts';
import { openCheckpoint, type OpenedCheckpoint } from './checkpoint.ts';
import { verifyConsistency } from './merkle.ts';
import type { NoteVerifier } from './note.ts';

export type ConsistencyProofFetcher = (size1: number, size2: number) => Promise<Uint8Array[]>;

export interface WitnessUpdate {
  checkpoint: OpenedCheckpoint;
  previousSize: number | undefined;
  /** 'first' when nothing was trusted before (trust on first use). */
  change: 'first' | 'same' | 'grew';
}

export class Witness {
  private constructor(
    private readonly logKey: NoteVerifier,
    private readonly stateFile: string | undefined,
    private trusted: OpenedCheckpoint | undefined,
    private readonly origin: string,
  ) {}

  /** Load the last trusted checkpoint from `stateFile` (if it exists); it must verify under `logKey`. */
  static async load(logKey: NoteVerifier, stateFile?: string, origin: string = logKey.name): Promise<Witness> {
    let trusted: OpenedCheckpoint | undefined;
    if (stateFile !== undefined) {
      let text: string | undefined;
      try {
        text = await readBoundedText(stateFile, FILE_CAPS.config, 'read the trusted checkpoint');
      } catch (e) {
        if (!isEdgeguardError(e, 'EG_NOT_FOUND')) throw e;
      }
      if (text !== undefined) trusted = openCheckpoint(text, logKey, origin);
    }
    return new Witness(logKey, stateFile, trusted, origin);
  }

  get last(): OpenedCheckpoint | undefined {
    return this.trusted;
  }

  /**
   * Check a new signed checkpoint against the trusted one. On success it becomes the trusted
   * checkpoint (and is saved); on a fork or rollback nothing is saved and EG_AUDIT_INCONSISTENT
   * is thrown.
   */
  async observe(signedNote: string, fetchProof: ConsistencyProofFetcher): Promise<WitnessUpdate> {
    const next = openCheckpoint(signedNote, this.logKey, this.origin);
    const prev = this.trusted;
    if (prev === undefined) {
      await this.accept(next);
      return { checkpoint: next, previousSize: undefined, change: 'first' };
    }
    const a = prev.checkpoint;
    const b = next.checkpoint;
    const evidence = { trusted: prev.signedNote, received: next.signedNote };
    if (b.size < a.size) {
      throw new EdgeguardError(
        'EG_AUDIT_INCONSISTENT',
        `rollback: the log now claims ${b.size} entries but already signed ${a.size}; entries were removed. Keep both checkpoints as evidence.`,
        { details: evidence },
      );
    }
    if (b.size === a.size) {
      if (!b.rootHash.equals(a.rootHash)) {
        throw new EdgeguardError(
          'EG_AUDIT_INCONSISTENT',
          `fork: the log signed two different roots for size ${a.size}; its history was rewritten. Keep both checkpoints as evidence.`,
          { details: evidence },
        );
      }
      await this.accept(next);
      return { checkpoint: next, previousSize: a.size, change: 'same' };
    }
    let proof: Uint8Array[];
    try {
      proof = await fetchProof(a.size, b.size);
    } catch (e) {
      throw new EdgeguardError(
        'EG_AUDIT_INCONSISTENT',
        `the log could not prove that size ${b.size} extends the trusted size ${a.size} (${(e as Error).message}); treat its history as rewritten until it does.`,
        { cause: e, details: evidence },
      );
    }
    if (!verifyConsistency(a.size, b.size, proof, a.rootHash, b.rootHash)) {
      throw new EdgeguardError(
        'EG_AUDIT_INCONSISTENT',
        `fork: the consistency proof from size ${a.size} to ${b.size} does not verify; the log's history was rewritten. Keep both checkpoints as evidence.`,
        { details: { ...evidence, proof: proof.map((p) => Buffer.from(p).toString('base64')) } },
      );
    }
    await this.accept(next);
    return { checkpoint: next, previousSize: a.size, change: 'grew' };
  }

  private async accept(cp: OpenedCheckpoint): Promise<void> {
    this.trusted = cp;
    if (this.stateFile === undefined) return;
    const tmp = `${this.stateFile}.tmp-${process.pid}`;
    try {
      await writeFile(tmp, cp.signedNote, { mode: 0o644 });
      await rename(tmp, this.stateFile);
    } catch (e) {
      throw fsError(e, this.stateFile, 'save the trusted checkpoint');
    }
  }
}
