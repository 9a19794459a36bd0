/**
 * HTTP plumbing of the inference service: error codes as statuses (every error body is
 * `{ error: { code, message } }` with a stable EG_* code), the Prometheus metrics, and listening
 * on the configured unix socket or host:port (serve.ts and report-only.ts).
 */
import { chmod, lstat, unlink } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { EdgeguardError, type ErrorCode } from '../errors/index.ts';
import { listenHost } from '../net/index.ts';
import type { AgentConfig } from './config.ts';

const STATUS: Partial<Record<ErrorCode, number>> = {
  EG_BAD_REQUEST: 400,
  EG_USAGE: 400,
  EG_NOT_FOUND: 404,
  EG_PAYLOAD_TOO_LARGE: 413,
  EG_UNSUPPORTED_MEDIA_TYPE: 415,
  EG_INPUT: 422,
  EG_OVERLOADED: 429,
  EG_RATE_LIMITED: 429,
  EG_PROBING: 429,
  EG_TIMEOUT: 503,
  EG_LOCKED: 503,
};

/** A request body not received within limits.requestTimeoutMs: 408, and the connection is closed. */
export class BodyTimeoutError extends EdgeguardError {
  constructor(ms: number) {
    super(
      'EG_TIMEOUT',
      `the request body did not arrive within limits.requestTimeoutMs (${ms} ms); send the whole body at once.`,
    );
  }
}

export function statusOf(code: ErrorCode): number {
  return STATUS[code] ?? 500;
}

export const ERROR_RESPONSE_SCHEMA = {
  type: 'object',
  properties: {
    error: {
      type: 'object',
      properties: { code: { type: 'string' }, message: { type: 'string' } },
      required: ['code', 'message'],
    },
  },
  required: ['error'],
} as const;

/** Fastify's own errors (body parsing, limits) as EG_* codes. */
function fromFastify(e: FastifyError): EdgeguardError | undefined {
  switch (e.code) {
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new EdgeguardError(
        'EG_UNSUPPORTED_MEDIA_TYPE',
        'send the input as image/png, image/jpeg or application/json (a tensor).',
      );
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new EdgeguardError('EG_PAYLOAD_TOO_LARGE', 'the request body is larger than limits.bodyBytes allows.');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new EdgeguardError('EG_BAD_REQUEST', 'the JSON body is empty.');
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new EdgeguardError('EG_BAD_REQUEST', 'the Content-Length header does not match the body.');
  }
  if (e.validation)
    return new EdgeguardError('EG_BAD_REQUEST', `the request body does not match the API schema: ${e.message}.`);
  if (e instanceof SyntaxError || (e.statusCode === 400 && /JSON/i.test(e.message)))
    return new EdgeguardError('EG_BAD_REQUEST', 'the body is not valid JSON.');
  if (e.statusCode === 413) return new EdgeguardError('EG_PAYLOAD_TOO_LARGE', 'the request body is too large.');
  if (e.statusCode === 415) return new EdgeguardError('EG_UNSUPPORTED_MEDIA_TYPE', 'unsupported content type.');
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500)
    return new EdgeguardError('EG_BAD_REQUEST', e.message);
  return undefined;
}

export function errorHandler(
  error: FastifyError | EdgeguardError | Error,
  request: FastifyRequest,
  reply: FastifyReply,
): void {
  const err = error instanceof EdgeguardError ? error : fromFastify(error as FastifyError);
  if (!err) {
    request.log.error({ err: error }, 'unexpected error');
    void reply.status(500).send({ error: { code: 'EG_INTERNAL', message: 'internal error; see the agent log.' } });
    return;
  }
  const status = err instanceof BodyTimeoutError ? 408 : statusOf(err.code);
  // The rest of a timed-out body is never read: the connection cannot carry another request.
  if (status === 408) void reply.header('connection', 'close');
  if (status >= 500 && err.code !== 'EG_TIMEOUT' && err.code !== 'EG_LOCKED')
    request.log.error({ err }, 'request failed');
  // A refusal (4xx, or 503 while locked or timed out) is counted by the metrics; its reason is
  // for debugging a client, not a line per request at info.
  else request.log.debug({ code: err.code }, err.message);
  // A locked device stays locked until re-provisioned: no point in retrying.
  const retryAfter = err.details?.['retryAfterS'];
  if (status === 429 || (status === 503 && err.code !== 'EG_LOCKED'))
    void reply.header('retry-after', typeof retryAfter === 'number' ? String(retryAfter) : '1');
  void reply.status(status).send({ error: { code: err.code, message: err.message } });
}

export interface AgentMetrics {
  registry: Registry;
  requests: Counter<'route' | 'status'>;
  verdicts: Counter<'verdict'>;
  overload: Counter;
  bodyBudgetRefused: Counter;
  bodiesWaiting: Gauge;
  connectionsWaiting: Gauge;
  connectionsRefused: Counter;
  probingRefused: Counter<'reason'>;
  probingClients: Gauge;
  inflight: Gauge;
  duration: Histogram<'route'>;
  stage: Histogram<'stage'>;
  reviewSealed: Counter;
  reviewDropped: Counter<'reason'>;
  reviewUploaded: Counter;
  reviewUploadFailures: Counter;
  spoolItems: Gauge;
  spoolBytes: Gauge;
  certNotAfter: Gauge;
  certRenewals: Counter<'result'>;
  certRenewalLastSuccess: Gauge;
  certRenewalLastTime: Gauge;
  journalEntries: Counter;
  journalDropped: Counter;
  journalHeadSeq: Gauge;
  journalForwardedSeq: Gauge;
  journalForwardFailures: Counter;
}

export function createAgentMetrics(): AgentMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'edgeguard_agent_' });
  const r = [registry];
  const buckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
  return {
    registry,
    requests: new Counter({
      name: 'edgeguard_agent_requests_total',
      help: 'HTTP requests by route and status',
      labelNames: ['route', 'status'],
      registers: r,
    }),
    verdicts: new Counter({
      name: 'edgeguard_agent_verdicts_total',
      help: 'Guard verdicts',
      labelNames: ['verdict'],
      registers: r,
    }),
    overload: new Counter({
      name: 'edgeguard_agent_overload_total',
      help: 'Inference requests refused with 429 (concurrency limit)',
      registers: r,
    }),
    bodyBudgetRefused: new Counter({
      name: 'edgeguard_agent_body_budget_refused_total',
      help: 'Large request bodies refused before reading because limits.bodyBytesInFlight was in use',
      registers: r,
    }),
    connectionsWaiting: new Gauge({
      name: 'edgeguard_agent_connections_waiting',
      help: 'New connections accepted but not yet read, waiting for limits.connectionRate',
      registers: r,
    }),
    connectionsRefused: new Counter({
      name: 'edgeguard_agent_connections_refused_total',
      help: 'New connections closed unread: too many waiting, or waited longer than limits.requestTimeoutMs',
      registers: r,
    }),
    bodiesWaiting: new Gauge({
      name: 'edgeguard_agent_large_bodies_waiting',
      help: 'Large requests waiting, unread, for room in limits.bodyBytesInFlight',
      registers: r,
    }),
    probingRefused: new Counter({
      name: 'edgeguard_agent_probing_refused_total',
      help: 'Inference requests refused with 429 by the probing defence, by reason (budget, near-duplicates)',
      labelNames: ['reason'],
      registers: r,
    }),
    probingClients: new Gauge({
      name: 'edgeguard_agent_probing_clients',
      help: 'Clients the probing defence tracks',
      registers: r,
    }),
    inflight: new Gauge({ name: 'edgeguard_agent_inflight', help: 'Inference requests in flight', registers: r }),
    duration: new Histogram({
      name: 'edgeguard_agent_request_duration_seconds',
      help: 'Request latency',
      labelNames: ['route'],
      buckets,
      registers: r,
    }),
    stage: new Histogram({
      name: 'edgeguard_agent_stage_duration_seconds',
      help: 'Latency of decoding, each guard stage and the whole pipeline',
      labelNames: ['stage'],
      buckets,
      registers: r,
    }),
    reviewSealed: new Counter({
      name: 'edgeguard_review_sealed_total',
      help: 'Inputs sealed to the review key and spooled',
      registers: r,
    }),
    reviewDropped: new Counter({
      name: 'edgeguard_review_dropped_total',
      help: 'Sealed items dropped (oldest first) to keep the spool within its limits',
      labelNames: ['reason'],
      registers: r,
    }),
    reviewUploaded: new Counter({
      name: 'edgeguard_review_uploaded_total',
      help: 'Sealed items delivered to the control plane',
      registers: r,
    }),
    reviewUploadFailures: new Counter({
      name: 'edgeguard_review_upload_failures_total',
      help: 'Failed delivery rounds',
      registers: r,
    }),
    spoolItems: new Gauge({
      name: 'edgeguard_review_spool_items',
      help: 'Sealed items waiting in the spool',
      registers: r,
    }),
    spoolBytes: new Gauge({
      name: 'edgeguard_review_spool_bytes',
      help: 'Bytes of sealed items waiting in the spool',
      registers: r,
    }),
    certNotAfter: new Gauge({
      name: 'edgeguard_agent_cert_not_after_seconds',
      help: 'notAfter of the device certificate in use (Unix seconds)',
      registers: r,
    }),
    certRenewals: new Counter({
      name: 'edgeguard_agent_cert_renewals_total',
      help: 'Certificate renewal attempts by result (renewed, failed)',
      labelNames: ['result'],
      registers: r,
    }),
    certRenewalLastSuccess: new Gauge({
      name: 'edgeguard_agent_cert_renewal_last_success',
      help: '1 if the last renewal attempt succeeded, 0 if it failed (absent before the first attempt)',
      registers: r,
    }),
    certRenewalLastTime: new Gauge({
      name: 'edgeguard_agent_cert_renewal_last_timestamp_seconds',
      help: 'When the last renewal attempt ended (Unix seconds)',
      registers: r,
    }),
    journalEntries: new Counter({
      name: 'edgeguard_agent_journal_entries_total',
      help: 'Events appended (signed, fsynced) to the device audit journal',
      registers: r,
    }),
    journalDropped: new Counter({
      name: 'edgeguard_agent_journal_dropped_total',
      help: 'Events dropped because the journal could not keep up or failed to write',
      registers: r,
    }),
    journalHeadSeq: new Gauge({
      name: 'edgeguard_agent_journal_head_seq',
      help: 'Sequence number of the last journal entry',
      registers: r,
    }),
    journalForwardedSeq: new Gauge({
      name: 'edgeguard_agent_journal_forwarded_seq',
      help: 'Sequence number of the last entry the control plane has logged',
      registers: r,
    }),
    journalForwardFailures: new Counter({
      name: 'edgeguard_agent_journal_forward_failures_total',
      help: 'Failed journal forwarding rounds',
      registers: r,
    }),
  };
}

/** Listen on the unix socket (replacing a stale one) or host:port. */
export async function listen(app: FastifyInstance, config: AgentConfig): Promise<{ url: string; port?: number }> {
  const socket = config.listen.socket;
  try {
    if (socket) {
      const st = await lstat(socket).catch(() => undefined);
      if (st?.isSocket()) await unlink(socket);
      else if (st)
        throw new EdgeguardError(
          'EG_EXISTS',
          `${socket} exists and is not a socket; choose another listen.socket path.`,
        );
      await app.listen({ path: socket });
      await chmod(socket, 0o660);
      return { url: `unix:${socket}` };
    }
    const bound = listenHost(config.listen.host);
    await app.listen({ host: bound, port: config.listen.port });
    const port = (app.server.address() as AddressInfo).port;
    const host = bound.includes(':') ? `[${bound}]` : bound;
    return { url: `http://${host}:${port}`, port };
  } catch (e) {
    if (e instanceof EdgeguardError) throw e;
    throw new EdgeguardError(
      'EG_IO',
      `could not listen on ${socket ?? `${config.listen.host}:${config.listen.port}`} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}).`,
      { cause: e },
    );
  }
}
