/**
 * The control plane's security events, emitted explicitly by the routes and services that cause
 * them (`ctx.events.emit('device.approved', {...})`) into the audit log. An event that cannot be
 * appended is retried a bounded number of times; if it still fails, its type's policy decides
 * (EVENT_FAILURE_POLICY, documented in docs/threat-model.md): the request fails with 503
 * EG_AUDIT_UNAVAILABLE, or the request goes on. Either way the failure is a pino error line and
 * a count in edgeguard_audit_event_failures_total: an event is never dropped without a trace.
 */
import type { FastifyBaseLogger, FastifyError, FastifyRequest, onErrorAsyncHookHandler } from 'fastify';
import type { Counter } from 'prom-client';
import type { AuditEvent, AuditEventType, StoreWork } from '../audit/index.ts';
import { EdgeguardError, isEdgeguardError, type ErrorCode } from '../errors/index.ts';
import { errorReply } from './errors.ts';

export type EventOf<T extends AuditEventType> = Extract<AuditEvent, { type: T }>;
/** What an emitter supplies; the type and time are filled in. */
export type EventInput<T extends AuditEventType> = Omit<EventOf<T>, 'type' | 'time'>;

/**
 * - fail-request: the answer would claim a security change the log cannot show (an approval, a
 *   revocation, a certificate issued); the caller gets 503 instead of a success.
 * - log-and-count: the request goes on; its own record stands (a pending device row, a refusal
 *   already answered), and the missing entry is on the error log and the metric.
 */
export type EventFailurePolicy = 'fail-request' | 'log-and-count';

export const EVENT_FAILURE_POLICY: Readonly<Record<AuditEventType, EventFailurePolicy>> = {
  'device.approved': 'fail-request',
  'device.revoked': 'fail-request',
  'cert.issued': 'fail-request',
  'device.rejected': 'fail-request',
  'policy.changed': 'fail-request',
  'release.published': 'fail-request',
  'checklist.reported': 'fail-request',
  'device.enrollment_requested': 'log-and-count',
  'admin.action': 'log-and-count',
  'attestation.result': 'log-and-count',
  'release.installed': 'log-and-count',
  'release.rejected': 'log-and-count',
  'model.loaded': 'log-and-count',
  'model.load_failed': 'log-and-count',
  'guard.flagged': 'log-and-count',
  'guard.rejected': 'log-and-count',
  'guard.probing': 'log-and-count',
  'review.item': 'log-and-count',
  'cert.renewed': 'log-and-count',
  'agent.started': 'log-and-count',
  'agent.stopped': 'log-and-count',
  'tamper.detected': 'log-and-count',
  'egress.denied': 'log-and-count',
  'device.locked': 'log-and-count',
  'audit.journal_gap': 'log-and-count',
  'enroll.failures': 'log-and-count',
};

/** Where events go: the audit log (anything with its append). */
export interface AuditEventSink {
  append(event: AuditEvent): Promise<unknown>;
  /** The event and the store write it records in one commit (the audit log on the server's own store). */
  appendWith?(event: AuditEvent, work: StoreWork): Promise<unknown>;
}

/** Waits before the 2nd and 3rd attempt: a store that is briefly busy or reconnecting recovers. */
const RETRY_DELAYS_MS = [50, 250];
/** Failures no retry can fix: the event itself is malformed or too large. */
const PERMANENT: readonly ErrorCode[] = ['EG_FORMAT', 'EG_INPUT', 'EG_USAGE'];

export class AuditEvents {
  private sink: AuditEventSink | undefined;

  constructor(
    private readonly log: FastifyBaseLogger,
    private readonly failures: Counter<'type' | 'policy'>,
  ) {}

  /** The audit plugin connects its log here; a server without it records no events. */
  attach(sink: AuditEventSink | undefined): void {
    this.sink = sink;
  }

  /** Append one event; with the fail-request policy, rejects with EG_AUDIT_UNAVAILABLE when it cannot. */
  async emit<T extends AuditEventType>(type: T, input: EventInput<T>): Promise<void> {
    const sink = this.sink;
    if (sink === undefined) return;
    const event = eventOf(type, input);
    const failure = await appendWithRetry((e) => sink.append(e), event);
    if (failure !== undefined) this.failed(type, event, failure);
  }

  /**
   * Emit an event together with the store write it records (`work`): one transaction, so one
   * commit, for both when the sink can (the audit log on the server's own store). Without such a
   * sink, or when the shared append fails for good (it rolled back, `work` with it), `alone` makes
   * the write by itself first; then the event goes as `emit` sends it, or its failure is handled
   * as `emit` handles it. Either way the record is written once, and the event never before it.
   */
  async emitWith<T extends AuditEventType>(
    type: T,
    input: EventInput<T>,
    work: StoreWork,
    alone: () => Promise<void>,
  ): Promise<void> {
    const sink = this.sink;
    const appendWith = sink?.appendWith?.bind(sink);
    if (appendWith === undefined) {
      await alone();
      return this.emit(type, input);
    }
    const event = eventOf(type, input);
    const failure = await appendWithRetry((e) => appendWith(e, work), event);
    if (failure === undefined) return;
    await alone();
    this.failed(type, event, failure);
  }

  /** An event that could not be appended: counted, logged, and thrown under the fail-request policy. */
  private failed(type: AuditEventType, event: AuditEvent, failure: Error): void {
    const policy = EVENT_FAILURE_POLICY[type];
    this.failures.inc({ type, policy });
    this.log.error({ err: failure, event, policy }, `audit event ${type} could not be appended to the audit log`);
    if (policy === 'fail-request')
      throw new EdgeguardError(
        'EG_AUDIT_UNAVAILABLE',
        `the ${type} event could not be written to the audit log (${failure.message}); the change itself was made, but is not yet on record. Restore the audit store (see the server log), then check \`edgeguard audit verify\`.`,
        { cause: failure },
      );
  }

  /**
   * A route option (`onError`) that records a refused or failed request as the event `build`
   * returns (log-and-count: the refusal is answered regardless). Rate-limited requests and the
   * log's own unavailability are not events of their own.
   */
  onRefusal(
    build: (req: FastifyRequest, status: number, code: ErrorCode) => EventInput<'admin.action'> | undefined,
  ): onErrorAsyncHookHandler {
    return async (req, _reply, error) => {
      const { status, code } = errorReply(error as FastifyError);
      if (status === 429 || code === 'EG_AUDIT_UNAVAILABLE') return;
      const input = build(req, status, code);
      if (input !== undefined) await this.emit('admin.action', input);
    };
  }
}

function eventOf<T extends AuditEventType>(type: T, input: EventInput<T>): AuditEvent {
  return { ...input, type, time: new Date().toISOString() } as AuditEvent;
}

/** Undefined once appended, else the last failure after the bounded retries. */
async function appendWithRetry(
  append: (event: AuditEvent) => Promise<unknown>,
  event: AuditEvent,
): Promise<Error | undefined> {
  for (let attempt = 0; ; attempt++) {
    try {
      await append(event);
      return undefined;
    } catch (e) {
      const err = e instanceof Error ? e : new Error(String(e));
      const permanent = PERMANENT.some((code) => isEdgeguardError(err, code));
      const delay = RETRY_DELAYS_MS[attempt];
      if (permanent || delay === undefined) return err;
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}

/** 'denied' for refusals of who is asking, 'failure' for anything else that went wrong. */
export function outcomeOf(status: number): 'denied' | 'failure' {
  return status === 401 || status === 403 ? 'denied' : 'failure';
}
