/**
 * The agent's HTTP app (fastify) and its routes: new connections admitted at
 * limits.connectionRate (connection-gate.ts), `POST /v1/infer` (the body's checks as it arrives,
 * in the route's hooks, and its decoding by content type are infer-body.ts; here, the route, its
 * schemas and the concurrency slot taken once the body is complete; the request's work, what a
 * verdict leads to and the answer are infer-handler.ts), `/healthz`, `/metrics`, `/openapi.json`.
 * Start-up wiring is in serve.ts.
 */
import { performance } from 'node:perf_hooks';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import swagger from '@fastify/swagger';
import type { Logger } from 'pino';
import type { EdgeguardError } from '../errors/index.ts';
import type { GuardedModel } from '../runtime/index.ts';
import type { AgentConfig } from './config.ts';
import {
  INFER_BODY_SCHEMA,
  addInputParsers,
  checkedBody,
  createBodyBudget,
  isLargeBody,
  reserveBody,
} from './infer-body.ts';
import { inferenceHandler, withTimeout, type InferenceHandler } from './infer-handler.ts';
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
    inferenceHandler(config, served, { review: o.review, journal: o.journal }, metrics, probing),
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
