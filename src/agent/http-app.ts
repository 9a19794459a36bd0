/**
 * The agent's HTTP surface (fastify): new connections admitted at limits.connectionRate
 * (connection-gate.ts), `POST /v1/infer` (the body's checks as it arrives, in the route's hooks,
 * and its decoding by content type are infer-body.ts; here, the concurrency slot taken once the
 * body is complete, the inference timeout, the answer), `/healthz`, `/metrics`, `/openapi.json`.
 * What one input means is src/runtime's checkInput; what a verdict leads to here is the review
 * queue and the audit journal. Start-up wiring is in serve.ts.
 */
import { performance } from 'node:perf_hooks';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from 'fastify';
import swagger from '@fastify/swagger';
import type { Logger } from 'pino';
import { EdgeguardError } from '../errors/index.ts';
import type { GuardResult } from '../guard/index.ts';
import type { ModelInput } from '../inference/index.ts';
import { checkInputKeeping, type GuardedInput, type GuardedModel, type Wipeable } from '../runtime/index.ts';
import type { AgentConfig } from './config.ts';
import {
  INFER_BODY_SCHEMA,
  addInputParsers,
  checkedBody,
  createBodyBudget,
  decodeRequest,
  inputTypeOf,
  isLargeBody,
  reserveBody,
  type InputType,
} from './infer-body.ts';
import { ConnectionGate, gateConnections } from '../net/index.ts';
import { Slots, type Slot } from './slots.ts';
import type { AgentJournal } from './agent-journal.ts';
import type { ReviewQueue } from './review.ts';
import { ProbingGate } from './probing-gate.ts';
import { ServedRuntime } from './served-runtime.ts';
import { ERROR_RESPONSE_SCHEMA, createAgentMetrics, errorHandler, type AgentMetrics } from './serve-http.ts';

declare module 'fastify' {
  interface FastifyRequest {
    egSlot?: Slot;
  }
}

export interface InferResponse {
  requestId: string;
  verdict: GuardResult['verdict'];
  label: string | null;
  index: number | null;
  confidence: number | null;
  source: 'primary' | 'fallback' | null;
  scores: number[] | null;
  reasons: GuardResult['reasons'];
  primary: { label: string; confidence: number } | null;
  review: { queued: boolean; id?: string } | null;
  model: { name: string; version: number };
  timings: Record<string, number>;
}

const reasonSchema = {
  type: 'object',
  properties: { stage: { type: 'string' }, code: { type: 'string' }, message: { type: 'string' } },
};
const INFER_RESPONSE_SCHEMA = {
  type: 'object',
  properties: {
    requestId: { type: 'string' },
    verdict: { type: 'string', enum: ['accept', 'flag', 'reject'] },
    label: { type: ['string', 'null'] },
    index: { type: ['integer', 'null'] },
    confidence: { type: ['number', 'null'] },
    source: { type: ['string', 'null'], enum: ['primary', 'fallback', null] },
    scores: { type: ['array', 'null'], items: { type: 'number' } },
    reasons: { type: 'array', items: reasonSchema },
    primary: { type: ['object', 'null'], properties: { label: { type: 'string' }, confidence: { type: 'number' } } },
    review: { type: ['object', 'null'], properties: { queued: { type: 'boolean' }, id: { type: 'string' } } },
    model: { type: 'object', properties: { name: { type: 'string' }, version: { type: 'integer' } } },
    timings: { type: 'object', additionalProperties: { type: 'number' } },
  },
} as const;

export interface BuildAgentAppOptions {
  logger?: Logger;
  review?: ReviewQueue;
  metrics?: AgentMetrics;
  /** Guard flags and rejections are journaled here (never the input). */
  journal?: AgentJournal;
  /** Extra /healthz fields (certificate, journal). */
  health?: () => Record<string, unknown>;
  /** Set by the tamper response: every /v1/ route answers its error (503 EG_LOCKED), /healthz says locked. */
  lock?: { error(): EdgeguardError | undefined };
  /** Why inference is refused now (the lease is lost), checked before each request's body is read. */
  refusal?: () => EdgeguardError | undefined;
  /** The probing defence's clock (tests); default Date.now. */
  now?: () => number;
}

const micro = (v: number | undefined) =>
  v === undefined || !Number.isFinite(v) ? 0 : Math.max(-1e12, Math.min(1e12, Math.round(v * 1e6)));

/** The check, score and threshold (x 10^6) of the first reason of a verdict, for the audit event. */
function guardFinding(r: GuardResult): { check: string; score: number; threshold: number } {
  const first = r.reasons[0];
  const s = r.stages;
  switch (first?.stage) {
    case 'confidence':
      return { check: first.code, score: micro(s.confidence?.value), threshold: micro(s.confidence?.threshold) };
    case 'squeeze':
      return { check: first.code, score: micro(s.squeeze?.score), threshold: micro(s.squeeze?.threshold) };
    case 'ensemble':
      return { check: first.code, score: micro(s.ensemble?.distance), threshold: micro(s.ensemble?.threshold) };
    case 'validation':
      return { check: first.code, score: micro(s.validation?.score), threshold: 0 };
    case 'combined':
      return { check: first.code, score: micro(s.combined?.score), threshold: micro(s.combined?.threshold) };
    default:
      return { check: 'unknown', score: 0, threshold: 0 };
  }
}

export async function buildAgentApp(
  config: AgentConfig,
  runtime: GuardedModel | ServedRuntime,
  o: BuildAgentAppOptions = {},
): Promise<{ app: FastifyInstance; metrics: AgentMetrics }> {
  const served = runtime instanceof ServedRuntime ? runtime : new ServedRuntime(runtime);
  const metrics = o.metrics ?? createAgentMetrics();
  const app = await createFastify(config, o.logger, metrics);
  const slots = new Slots(config.limits.concurrency, metrics.overload, metrics.inflight);
  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unknown';
    metrics.requests.inc({ route, status: String(reply.statusCode) });
    metrics.duration.observe({ route }, reply.elapsedTime / 1000);
    // A 4xx (a refused input, overload, a client's budget) is answered at the client's pace: the
    // metrics above count it and its reason is logged at debug (errorHandler), so a client
    // flooding refused requests cannot turn them into log I/O. Everything else: one line, here.
    if (reply.statusCode >= 400 && reply.statusCode < 500) return;
    req.log.info({ req, res: reply, responseTime: reply.elapsedTime }, 'request completed');
  });
  const lock = o.lock;
  if (lock)
    app.addHook('onRequest', async (req) => {
      const error = lock.error();
      if (error && req.url.startsWith('/v1/')) throw error;
    });
  registerServiceRoutes(app, config, served, o, metrics, slots);
  const model = served.current.primary.metadata;
  const probing = config.probing.enabled
    ? new ProbingGate(config.probing, metrics, o.journal, `${model.name}@${model.version}`, o.now)
    : undefined;
  registerInferRoute(
    app,
    config,
    metrics,
    slots,
    inferenceHandler(config, served, o, metrics, probing),
    o.refusal,
    probing,
  );
  return { app, metrics };
}

/** New connections waiting for limits.connectionRate at most; more are closed at once. */
const MAX_WAITING_CONNECTIONS = 1024;

/**
 * Fastify with the limits, the new-connection gate, error answers, OpenAPI and the accepted body
 * types (infer-body.ts).
 */
async function createFastify(
  config: AgentConfig,
  logger: Logger | undefined,
  metrics: AgentMetrics,
): Promise<FastifyInstance> {
  const limits = config.limits;
  const app = Fastify({
    ...(logger ? { loggerInstance: logger as FastifyBaseLogger } : { logger: false }),
    bodyLimit: limits.bodyBytes,
    // The body's own deadline (checkedBody, infer-body.ts) answers 408 with an EG body; Node's
    // coarser whole-request timeout (checked every 30 s) stays as the backstop for headers that
    // never end.
    requestTimeout: 2 * limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    connectionTimeout: limits.requestTimeoutMs,
    forceCloseConnections: 'idle',
    return503OnClosing: true,
    // Router errors (a malformed URL) get the same EG body as every other answer.
    frameworkErrors: errorHandler,
    // One line per request, written in onResponse (buildAgentApp), none for a 4xx.
    logController: new LogController({ disableRequestLogging: true }),
  });
  // One gate for every client: loopback TCP clients all come from 127.0.0.1 and Node does not give
  // a unix socket's peer credentials, so a client that opens a connection per request waits
  // behind the crowd (use keep-alive); it is not refused.
  const gate = new ConnectionGate({
    ratePerSecond: limits.connectionRate,
    burst: limits.connectionBurst ?? limits.connectionRate,
    waitMs: limits.requestTimeoutMs,
    maxWaiting: MAX_WAITING_CONNECTIONS,
    onRefused: () => metrics.connectionsRefused.inc(),
    onWaiting: (n) => metrics.connectionsWaiting.set(n),
  });
  gateConnections(app.server, gate);
  // Waiting connections are not the HTTP server's yet: it would wait for them to close.
  app.addHook('preClose', async () => gate.close());
  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler((req, reply) => {
    void reply.status(404).send({
      error: { code: 'EG_NOT_FOUND', message: `no route ${req.method} ${req.url.split('?')[0]}; see /openapi.json.` },
    });
  });
  if (config.openapi.enabled) {
    await app.register(swagger, {
      openapi: {
        info: {
          title: 'edgeguard agent inference API',
          version: '1',
          description: 'In-memory inference behind the adversarial-input guard.',
        },
        components: {},
      },
    });
  }
  addInputParsers(app, limits.bodyBytes);
  return app;
}

function registerServiceRoutes(
  app: FastifyInstance,
  config: AgentConfig,
  served: ServedRuntime,
  o: BuildAgentAppOptions,
  metrics: AgentMetrics,
  slots: Slots,
): void {
  app.get('/healthz', { schema: { tags: ['service'], summary: 'liveness and what is loaded' } }, async () =>
    healthBody(served.current, o, slots),
  );
  if (config.metrics.enabled) {
    app.get('/metrics', { schema: { hide: true } }, async (_req, reply) => {
      void reply.header('content-type', metrics.registry.contentType);
      return metrics.registry.metrics();
    });
  }
  if (config.openapi.enabled) app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
}

/** /healthz: what is served now (after a release switch, the new models), the key posture, load. */
function healthBody(runtime: GuardedModel, o: BuildAgentAppOptions, slots: Slots): Record<string, unknown> {
  return {
    status: o.lock?.error() ? 'locked' : 'ok',
    models: Object.fromEntries(
      (['primary', 'ensemble', 'fallback'] as const)
        .filter((k) => runtime[k])
        .map((k) => [
          k,
          {
            name: runtime[k]!.metadata.name,
            version: runtime[k]!.metadata.version,
            headerSha256: runtime[k]!.provenance.headerSha256,
          },
        ]),
    ),
    key: runtime.key,
    runtime: { executionProviders: runtime.executionProviders },
    inflight: slots.inflight,
    review: o.review ? { keyId: o.review.keyId, spooled: o.review.spool.items } : null,
    ...(o.health?.() ?? {}),
  };
}

type InferenceHandler = (req: FastifyRequest, t0: number) => Promise<InferResponse>;

function registerInferRoute(
  app: FastifyInstance,
  config: AgentConfig,
  metrics: AgentMetrics,
  slots: Slots,
  handle: InferenceHandler,
  refusal: BuildAgentAppOptions['refusal'],
  probing: ProbingGate | undefined,
): void {
  const limits = config.limits;
  const budget = createBodyBudget(limits, metrics);
  app.post(
    '/v1/infer',
    {
      schema: {
        tags: ['inference'],
        summary: 'classify one input behind the guard',
        description:
          'Send image/png or image/jpeg bytes (image models), application/json {"tensor":{"dims":[..],"data":[numbers]}} or {"inputs":{"NAME":{"dims":[..],"data":[numbers]}}}, or application/x-npy (one NumPy array). Tensors must match the model metadata: dims (422), values within each input\'s declared range (422; 0..1 for image models that declare none). The verdict is accept (primary answer), flag (fallback answer; the input is sealed to the review key) or reject (no answer). 408 when the body does not arrive within limits.requestTimeoutMs; 429 when the concurrency limit is reached (EG_OVERLOADED), the client query budget is spent (EG_RATE_LIMITED) or its inputs look like a query attack (EG_PROBING), with Retry-After.',
        body: INFER_BODY_SCHEMA,
        response: {
          200: INFER_RESPONSE_SCHEMA,
          400: ERROR_RESPONSE_SCHEMA,
          408: ERROR_RESPONSE_SCHEMA,
          413: ERROR_RESPONSE_SCHEMA,
          415: ERROR_RESPONSE_SCHEMA,
          422: ERROR_RESPONSE_SCHEMA,
          429: ERROR_RESPONSE_SCHEMA,
          503: ERROR_RESPONSE_SCHEMA,
        },
      },
      // The content-type parsers checked the bodies strictly; the schemas above document them.
      validatorCompiler: () => () => true,
      // A device that may not serve (lease lost) refuses before the body is read; so does the
      // probing defence for a client that is blocked or out of budget. Then a large body waits,
      // unread, for room in limits.bodyBytesInFlight; refused, its connection is closed (the
      // unread body cannot be skipped).
      onRequest: async (req, reply) => {
        const refused = refusal?.();
        if (refused) throw refused;
        probing?.admit(req);
        await reserveBody(budget, req, reply, limits.bodyBytes);
      },
      preParsing: async (req, reply, payload) =>
        checkedBody(payload, req, reply, limits.requestTimeoutMs, limits.bodyBytes),
      // The slot is taken once the body is complete and valid: a client trickling its body holds
      // a connection and a timer, never one of the few inference slots.
      preHandler: async (req, reply) => {
        // A large body (as limits.bodyBytesInFlight counts them) never takes the last free slot.
        const slot = slots.acquire(isLargeBody(req, limits.bodyBytes));
        req.egSlot = slot;
        // The response is finished or the connection is gone (client abort): a request that never
        // reached its work frees the slot here; one that did, when the work ends.
        reply.raw.once('close', () => {
          if (!slot.work) slots.release(slot);
        });
      },
    },
    async (req) => {
      const slot = req.egSlot!;
      const work = handle(req, performance.now());
      slot.work = work;
      // The slot is held until the work really ends, even after a timeout answer.
      work.then(
        () => slots.release(slot),
        () => slots.release(slot),
      );
      return withTimeout(work, limits.inferenceTimeoutMs);
    },
  );
}

async function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new EdgeguardError('EG_TIMEOUT', `the inference took longer than limits.inferenceTimeoutMs (${ms} ms).`),
        ),
      ms,
    );
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** What goes to review: the image bytes as sent, or the inputs as checked (re-encoded as tensor JSON). */
function reviewBytesOf(input: GuardedInput, inputs: readonly ModelInput[], wipeLater: Wipeable[]): Buffer {
  if (input.kind === 'image') return input.bytes;
  const byName = Object.fromEntries(
    inputs.map((i) => [i.name, { dims: i.dims, data: Array.from(i.data as ArrayLike<number | bigint>, Number) }]),
  );
  const b = Buffer.from(JSON.stringify({ inputs: byName }));
  wipeLater.push(b);
  return b;
}

/** Review holds an image as sent, tensors (JSON or .npy) as the JSON reviewBytesOf writes. */
function reviewTypeOf(input: GuardedInput, type: InputType): InputType {
  return input.kind === 'image' ? type : 'application/json';
}

/** POST /v1/infer's work: decode, check, review and journal the verdict, answer. */
function inferenceHandler(
  config: AgentConfig,
  served: ServedRuntime,
  o: BuildAgentAppOptions,
  metrics: AgentMetrics,
  probing: ProbingGate | undefined,
): InferenceHandler {
  return (req, t0) => served.use((runtime) => handleInference(config, runtime, o, metrics, probing, req, t0));
}

/** One request on the runtime it started with (a release switch meanwhile does not touch it). */
async function handleInference(
  config: AgentConfig,
  runtime: GuardedModel,
  o: BuildAgentAppOptions,
  metrics: AgentMetrics,
  probing: ProbingGate | undefined,
  req: FastifyRequest,
  t0: number,
): Promise<InferResponse> {
  const model = runtime.primary;
  const modelInfo = { name: model.metadata.name, version: model.metadata.version };
  const modelSha256 = model.provenance.headerSha256;
  const type = inputTypeOf(req);
  // Everything derived from the input is wiped when the request ends, on every path.
  const wipeLater: Wipeable[] = [];
  try {
    const input = decodeRequest(req, type, wipeLater);
    const checkStart = performance.now();
    const checked = await checkInputKeeping(runtime, input, wipeLater);
    // A client caught probing gets no answer (nor review, nor a guard event): the 429 and its journal event.
    probing?.observe(req, checked.inputs);
    const timings = observeTimings(metrics, checkStart - t0 + checked.decodeMs, checked.result);
    const r = checked.result;
    metrics.verdicts.inc({ verdict: r.verdict });
    let review: InferResponse['review'] = null;
    if (o.review && config.review.verdicts.includes(r.verdict as 'flag' | 'reject')) {
      const bytes = reviewBytesOf(input, checked.inputs, wipeLater);
      review = await queueForReview(
        req,
        o.review,
        metrics,
        r,
        { type: reviewTypeOf(input, type), ...modelInfo, headerSha256: modelSha256 },
        bytes,
      );
    }
    if (o.journal && (r.verdict === 'flag' || r.verdict === 'reject')) {
      o.journal.record(
        r.verdict === 'flag' ? 'guard.flagged' : 'guard.rejected',
        r.verdict === 'flag' ? 'success' : 'denied',
        {
          ...guardFinding(r),
          queuedForReview: review?.queued ?? false,
          reasons: [...new Set(r.reasons.map((x) => x.code))].slice(0, 16),
          model: `${modelInfo.name}@${modelInfo.version}`,
          modelSha256,
        },
      );
    }
    timings.totalMs = performance.now() - t0;
    metrics.stage.observe({ stage: 'total' }, timings.totalMs / 1000);
    return inferResponse(req.id, r, review, modelInfo, timings);
  } finally {
    for (const b of wipeLater) b.fill(0);
  }
}

/** The decode time and the guard's stage timings, into the answer and the stage histogram. */
function observeTimings(metrics: AgentMetrics, decodeMs: number, r: GuardResult): Record<string, number> {
  const timings: Record<string, number> = { decodeMs };
  metrics.stage.observe({ stage: 'decode' }, decodeMs / 1000);
  for (const [k, v] of Object.entries(r.timings)) {
    if (typeof v === 'number') {
      timings[k] = v;
      metrics.stage.observe({ stage: k.replace(/Ms$/, '') === 'total' ? 'guard' : k.replace(/Ms$/, '') }, v / 1000);
    }
  }
  return timings;
}

/** Seal the input to the review key and spool it; a failure is logged and answered as not queued. */
async function queueForReview(
  req: FastifyRequest,
  queue: ReviewQueue,
  metrics: AgentMetrics,
  r: GuardResult,
  m: { type: InputType; name: string; version: number; headerSha256: string },
  bytes: Buffer,
): Promise<InferResponse['review']> {
  try {
    const { id } = await queue.submit(
      {
        contentType: m.type,
        verdict: r.verdict,
        reasons: r.reasons,
        ...(r.answer
          ? { answer: { source: r.answer.source, label: r.answer.label, confidence: r.answer.confidence } }
          : {}),
        ...(r.primary ? { primary: { label: r.primary.label, confidence: r.primary.confidence } } : {}),
        model: { name: m.name, version: m.version, headerSha256: m.headerSha256 },
      },
      bytes,
    );
    metrics.reviewSealed.inc();
    return { queued: true, id };
  } catch (e) {
    req.log.error({ err: e }, 'could not queue the input for review');
    return { queued: false };
  }
}

function inferResponse(
  requestId: string,
  r: GuardResult,
  review: InferResponse['review'],
  model: InferResponse['model'],
  timings: Record<string, number>,
): InferResponse {
  const a = r.answer;
  return {
    requestId,
    verdict: r.verdict,
    label: a?.label ?? null,
    index: a?.index ?? null,
    confidence: a?.confidence ?? null,
    source: a?.source ?? null,
    scores: a?.scores ?? null,
    reasons: r.reasons,
    primary: r.primary ? { label: r.primary.label, confidence: r.primary.confidence } : null,
    review,
    model,
    timings,
  };
}
