/**
 * Checkpoint publishing (C2SP tlog-checkpoint): a checkpoint is signed only after a self-check. The
 * root recomputed from the stored nodes must equal the state row, and the tree must be provably
 * consistent (RFC 9162 section 2.1.4) with the last checkpoint signed. The log therefore never
 * signs a checkpoint inconsistent with an earlier one, even if its tables were edited; it raises
 * EG_AUDIT_INCONSISTENT instead.
 */
import { EdgeguardError } from '../errors/index.ts';
import { openCheckpoint, signCheckpoint } from './checkpoint.ts';
import { consistencyProof, treeRoot, verifyConsistency } from './merkle.ts';
import type { NoteSigner, NoteVerifier } from './note.ts';
import type { AuditStorage, StoredCheckpoint, TreeState } from './storage.ts';

export interface CheckpointPublisherOptions {
  signer: NoteSigner | undefined;
  verifier: NoteVerifier;
  origin: string;
  now: () => Date;
  /** Called when a timed publication fails (the timer keeps running). */
  onAlarm: ((e: EdgeguardError) => void) | undefined;
}

export class CheckpointPublisher {
  private publishing: Promise<StoredCheckpoint> | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly storage: AuditStorage,
    private readonly opts: CheckpointPublisherOptions,
  ) {}

  /** Sign a checkpoint every `intervalMs` when the tree grew. */
  start(intervalMs: number): void {
    this.timer = setInterval(() => {
      this.publish().catch((e: unknown) => this.alarm(e));
    }, intervalMs);
    this.timer.unref();
  }

  /** Stop the timer and wait for a publication under way. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.publishing?.catch(() => undefined);
  }

  alarm(e: unknown): void {
    const err =
      e instanceof EdgeguardError
        ? e
        : new EdgeguardError('EG_AUDIT', `signing a checkpoint failed (${(e as Error).message}).`, { cause: e });
    this.opts.onAlarm?.(err);
  }

  /** Sign a checkpoint of the current tree unless the latest one already covers it (one at a time). */
  publish(): Promise<StoredCheckpoint> {
    if (this.publishing) return this.publishing;
    this.publishing = this.publishNow().finally(() => {
      this.publishing = undefined;
    });
    return this.publishing;
  }

  private async publishNow(): Promise<StoredCheckpoint> {
    // The last checkpoint first, then the state: the state only grows, so another replica signing
    // in between cannot make the state look older than a checkpoint (no false rollback alarm).
    const last = await this.storage.latestCheckpoint();
    const state = await this.storage.readState();
    if (last !== undefined && last.size === state.size && last.root.equals(state.root)) return last;
    if (last !== undefined) this.checkContinues(last, state);
    const root = await this.checkedRoot(state, last);
    const signer = this.opts.signer;
    if (signer === undefined)
      throw new EdgeguardError(
        'EG_USAGE',
        'this audit log was opened read-only (no signing key); the server signs checkpoints.',
      );
    const note = signCheckpoint({ origin: this.opts.origin, size: state.size, rootHash: root, extensions: [] }, signer);
    const stored = await this.storage.insertCheckpoint({ size: state.size, root, note }, this.opts.now().toISOString());
    if (!stored.root.equals(root)) {
      throw new EdgeguardError(
        'EG_AUDIT_INCONSISTENT',
        `another writer stored a different root for size ${state.size}; two log instances disagree.`,
      );
    }
    return stored;
  }

  /** The last checkpoint is this log's (same key and origin) and the state has grown past it. */
  private checkContinues(last: StoredCheckpoint, state: TreeState): void {
    // Every checkpoint of one log carries one origin under one key: a replica configured with
    // another key or origin must not start a second, unverifiable line of checkpoints.
    try {
      openCheckpoint(last.note, this.opts.verifier, this.opts.origin);
    } catch (e) {
      throw new EdgeguardError(
        'EG_AUDIT',
        `the log's last checkpoint (size ${last.size}) was not signed by this server's log key for origin "${this.opts.origin}"; every replica must use the same audit-log.key and origin.`,
        { cause: e },
      );
    }
    if (last.size >= state.size) {
      throw new EdgeguardError(
        'EG_AUDIT_INCONSISTENT',
        `the log state (size ${state.size}, root ${state.root.toString('hex').slice(0, 16)}...) is behind or beside its last signed checkpoint (size ${last.size}); the audit tables were rolled back or altered.`,
      );
    }
  }

  /** The root recomputed from the stored nodes, checked against the state row and the last checkpoint. */
  private async checkedRoot(state: TreeState, last: StoredCheckpoint | undefined): Promise<Buffer> {
    const root = await treeRoot(this.storage.nodes, state.size);
    if (!root.equals(state.root)) {
      throw new EdgeguardError(
        'EG_AUDIT_INCONSISTENT',
        `the stored tree nodes for size ${state.size} do not hash to the recorded root; the audit tables were altered.`,
      );
    }
    if (last !== undefined) {
      const proof = await consistencyProof(this.storage.nodes, last.size, state.size);
      if (!verifyConsistency(last.size, state.size, proof, last.root, root)) {
        throw new EdgeguardError(
          'EG_AUDIT_INCONSISTENT',
          `the stored tree of size ${state.size} is not consistent with the checkpoint signed at size ${last.size}; entries were altered or removed.`,
        );
      }
    }
    return root;
  }
}
