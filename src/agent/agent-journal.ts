/**
 * The running agent's own audit journal (issue: tamper-evident audit). The agent records its
 * security events (model loads, guard flags and rejections, review items, certificate renewals,
 * start and stop) into the device journal of src/audit/journal.ts: hash-chained, each entry
 * signed with the device certificate's key, one write + fsync per batch. A background loop
 * forwards the journal to the control plane over mutual TLS.
 *
 *   - record() is synchronous and cheap (validate, push to memory): inference never waits for
 *     the disk or the network. Events that arrive while a batch is being written form the next
 *     batch (group commit). At most `maxPending` events wait for the disk; beyond that new ones
 *     are dropped, logged and counted.
 *   - Forwarding runs every `intervalMs`; while the control plane is unreachable the interval
 *     backs off exponentially (with jitter) up to `backoffMaxMs`, and entries wait on disk. The
 *     server's journal head decides where to resume, so nothing is sent twice or skipped. One
 *     round reads a bounded part of the journal; a backlog is sent over consecutive rounds.
 *   - Nothing here ever carries input bytes: guard events hold verdicts, reason codes and model
 *     identities only.
 */
import type { KeyObject } from 'node:crypto';
import type { Logger } from 'pino';
import { EdgeguardError } from '../errors/index.ts';
import {
  Journal,
  forwardJournal,
  journalSignerFromKey,
  parseAuditEvent,
  type AuditEvent,
  type ForwardResult,
  type JournalTransport,
} from '../audit/index.ts';
import { backoffDelay } from '../fleet/index.ts';

type Details<T extends AuditEvent['type']> = Extract<AuditEvent, { type: T }>['details'];

export interface AgentJournalOptions {
  path: string;
  /** The device certificate's private key: the server checks journal signatures against the certificate. */
  privateKey: KeyObject;
  publicKey: KeyObject;
  deviceId: string;
  transport?: JournalTransport;
  intervalMs: number;
  backoffMaxMs: number;
  batch: number;
  maxPending: number;
  /** Bytes of journal read per forwarding round (default 1 MiB). */
  maxBytesPerRound?: number;
  log?: Logger;
  random?: () => number;
  events?: {
    appended?(count: number, lastSeq: number): void;
    dropped?(count: number): void;
    forwarded?(result: ForwardResult): void;
    forwardFailed?(error: EdgeguardError): void;
  };
}

export interface JournalStatus {
  path: string;
  lastSeq: number;
  pending: number;
  dropped: number;
  forwardedSeq: number | null;
  consecutiveFailures: number;
  lastForward: { at: string; ok: boolean; sent?: number; error?: string } | null;
  nextForwardAt: string | null;
}

export class AgentJournal {
  private pending: AuditEvent[] = [];
  private writing: Promise<void> | undefined;
  private forwarding: Promise<ForwardResult | undefined> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private failures = 0;
  private dropped = 0;
  private forwardedSeq: number | null = null;
  private lastForward: JournalStatus['lastForward'] = null;
  private nextForwardAt: number | null = null;
  private closed = false;
  private lastError: string | undefined;

  private constructor(
    readonly journal: Journal,
    private readonly o: AgentJournalOptions,
  ) {}

  static async open(o: AgentJournalOptions): Promise<AgentJournal> {
    try {
      return new AgentJournal(await Journal.open(o.path, journalSignerFromKey(o.privateKey), o.publicKey), o);
    } catch (e) {
      if (e instanceof EdgeguardError && e.code === 'EG_TAMPERED') {
        throw new EdgeguardError(
          'EG_TAMPERED',
          `${e.message} The agent refuses to continue a journal it cannot verify with the device key. If the device key changed (a new enrollment), move the old journal away (keep it as evidence: \`edgeguard audit journal\` checks it with the old key).`,
          { cause: e, details: e.details },
        );
      }
      throw e;
    }
  }

  get deviceId(): string {
    return this.o.deviceId;
  }

  /** Record one event (actor: this device). Never throws, never waits. */
  record<T extends AuditEvent['type']>(
    type: T,
    outcome: AuditEvent['outcome'],
    details: Details<T>,
    subject?: string,
  ): void {
    if (this.closed) return;
    let event: AuditEvent;
    try {
      event = parseAuditEvent({
        type,
        time: new Date().toISOString(),
        actor: { kind: 'device', id: this.o.deviceId },
        subject: subject ?? this.o.deviceId,
        outcome,
        details,
      });
    } catch (e) {
      this.o.log?.error({ err: e, type }, 'an agent audit event does not match the event schema; not journaled');
      return;
    }
    if (this.pending.length >= this.o.maxPending) {
      this.dropped += 1;
      this.o.events?.dropped?.(1);
      if (this.dropped === 1 || this.dropped % 1000 === 0)
        this.o.log?.error(
          { dropped: this.dropped, type },
          'the audit journal cannot keep up; events are being dropped',
        );
      return;
    }
    this.pending.push(event);
    this.writing ??= new Promise<void>((r) => setImmediate(r)).then(() => this.write());
  }

  /**
   * Append events made elsewhere (the tamper response's, already validated) and wait until they
   * are on disk (fsynced). Unlike record(), this waits and throws when the disk refused them.
   */
  async appendNow(events: AuditEvent[]): Promise<void> {
    await this.flush();
    await this.journal.append(events);
    this.o.events?.appended?.(events.length, this.journal.lastSeq);
  }

  /** Write what is pending now (one write + fsync per batch). */
  async flush(): Promise<void> {
    while (this.writing || this.pending.length > 0) {
      this.writing ??= this.write();
      await this.writing;
    }
  }

  private async write(): Promise<void> {
    try {
      while (this.pending.length > 0) {
        const batch = this.pending;
        this.pending = [];
        try {
          const entries = await this.journal.append(batch);
          this.o.events?.appended?.(entries.length, this.journal.lastSeq);
        } catch (e) {
          // The disk refused (full, read-only): these events are lost; say so loudly.
          this.dropped += batch.length;
          this.o.events?.dropped?.(batch.length);
          this.o.log?.error({ err: e, events: batch.length }, 'could not append to the audit journal; events dropped');
        }
      }
    } finally {
      this.writing = undefined;
    }
  }

  /** One forwarding round (after writing what is pending). Throws the transport's error. */
  forward(): Promise<ForwardResult | undefined> {
    const transport = this.o.transport;
    if (!transport) return Promise.resolve(undefined);
    this.forwarding ??= (async () => {
      await this.flush();
      const r = await forwardJournal(this.journal, transport, {
        batch: this.o.batch,
        maxBytes: this.o.maxBytesPerRound ?? 1024 * 1024,
      });
      this.forwardedSeq = r.serverSeq;
      if (r.gaps.length > 0)
        this.o.log?.error({ gaps: r.gaps.slice(0, 5) }, 'the control plane reports gaps in this device journal');
      if (r.serverSeq > this.journal.lastSeq) {
        this.o.log?.warn(
          { serverSeq: r.serverSeq, localSeq: this.journal.lastSeq },
          'the control plane holds journal entries beyond this journal (was the journal replaced?); new entries continue the local chain',
        );
      }
      return r;
    })().finally(() => {
      this.forwarding = undefined;
    });
    return this.forwarding;
  }

  private schedule(delayMs: number): void {
    if (this.closed || !this.o.transport) return;
    if (this.timer) clearTimeout(this.timer);
    this.nextForwardAt = Date.now() + delayMs;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.round();
    }, delayMs);
    this.timer.unref();
  }

  /** A timer round: forward, then schedule the next (backoff after a failure). Never throws. */
  private async round(): Promise<void> {
    try {
      const r = await this.forward();
      this.failures = 0;
      this.lastError = undefined;
      if (r) {
        this.lastForward = { at: new Date().toISOString(), ok: true, sent: r.sent };
        this.o.events?.forwarded?.(r);
      }
      // A backlog larger than one round: continue soon, yielding to inference in between.
      this.schedule(r && r.serverSeq < this.journal.lastSeq && r.sent > 0 ? 10 : this.o.intervalMs);
    } catch (e) {
      const err =
        e instanceof EdgeguardError
          ? e
          : new EdgeguardError('EG_SERVER', `forwarding the audit journal failed (${(e as Error).message}).`, {
              cause: e,
            });
      this.failures += 1;
      this.lastForward = { at: new Date().toISOString(), ok: false, error: err.message };
      this.o.events?.forwardFailed?.(err);
      const delay = backoffDelay(
        this.failures,
        this.o.intervalMs,
        Math.max(this.o.intervalMs, this.o.backoffMaxMs),
        (this.o.random ?? Math.random)(),
      );
      if (this.lastError !== err.message)
        this.o.log?.warn(
          { code: err.code, waiting: Math.max(0, this.journal.lastSeq - (this.forwardedSeq ?? -1)), retryInMs: delay },
          `could not forward the audit journal; entries wait on disk: ${err.message}`,
        );
      this.lastError = err.message;
      this.schedule(delay);
    }
  }

  start(): void {
    if (!this.o.transport || this.timer) return;
    this.schedule(0);
  }

  status(): JournalStatus {
    return {
      path: this.journal.path,
      lastSeq: this.journal.lastSeq,
      pending: this.pending.length,
      dropped: this.dropped,
      forwardedSeq: this.forwardedSeq,
      consecutiveFailures: this.failures,
      lastForward: this.lastForward,
      nextForwardAt: this.nextForwardAt === null ? null : new Date(this.nextForwardAt).toISOString(),
    };
  }

  /**
   * Stop the loop and write what is pending; then one last forwarding attempt of at most
   * `forwardTimeoutMs` (what does not make it is sent on the next start).
   */
  async close(forwardTimeoutMs = 2000): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.flush();
    this.closed = true;
    if (this.o.transport && forwardTimeoutMs > 0 && this.failures === 0) {
      let t: NodeJS.Timeout | undefined;
      await Promise.race([
        this.forward().catch(() => undefined),
        new Promise((r) => (t = setTimeout(r, forwardTimeoutMs))),
      ]);
      clearTimeout(t);
    } else {
      await this.forwarding?.catch(() => undefined);
    }
  }
}
