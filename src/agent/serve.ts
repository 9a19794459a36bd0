/**
 * The agent's inference service (`edgeguard agent serve`): HTTP on loopback or a unix socket
 * (fastify). `POST /v1/infer` takes a PNG/JPEG image or a tensor as JSON and answers the label,
 * scores, the guard verdict with its reasons, and timings.
 *
 *   - Models come from protected packages, verified and decrypted into memory only
 *     (loadProtectedModel); the content key comes from a key file or a device-wrapped key and is
 *     wiped once the sessions exist.
 *   - Inputs are decoded and processed only in memory (sharp from a buffer); the request body and
 *     the decoded pixels are wiped after each request. A flagged input leaves the process only
 *     sealed to the review public key (review.ts).
 *   - Bounded body size (413), request and inference timeouts (503), a concurrency limit checked
 *     before the body is read (429 with Retry-After, no queue), graceful shutdown.
 *   - pino logs (never bodies), /healthz, OpenAPI at /openapi.json, Prometheus at /metrics.
 *   - With `upload` (a device identity): the device certificate is renewed at two thirds of its
 *     lifetime (renewal.ts) and the agent's security events go to its signed journal, forwarded to
 *     the control plane (agent-journal.ts).
 */
import { createHash, createPrivateKey, createPublicKey } from 'node:crypto';
import { readFile, unlink, chmod, lstat } from 'node:fs/promises';
import { basename } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from 'fastify';
import swagger from '@fastify/swagger';
import type { Logger } from 'pino';
import { EdgeguardError, fsError } from '../errors/index.ts';
import { parseSealPublicKeyPem, readPublicSigningKey } from '../crypto/index.ts';
import type { LoadedModel } from '../inference/index.ts';
import type { GuardResult } from '../guard/index.ts';
import { checkInputKeeping, openGuardedModel, type GuardedInput, type GuardedModel } from '../runtime/index.ts';
import type { AgentConfig } from './config.ts';
import { AgentIdentity, CertificateRenewer } from './renewal.ts';
import { AgentJournal } from './agent-journal.ts';
import { ReviewQueue, fleetReviewSink, type ReviewSink } from './review.ts';
import { ERROR_RESPONSE_SCHEMA, createAgentMetrics, errorHandler, type AgentMetrics } from './serve-http.ts';

/** The models and the guard the agent serves (src/runtime). */
export type AgentRuntime = GuardedModel;

/** Load the models (in memory) and build the guard, as the config says. */
export async function loadAgentRuntime(config: AgentConfig): Promise<AgentRuntime> {
  return openGuardedModel({
    models: config.models,
    publicKeys: await Promise.all(config.trust.publicKeys.map((p) => readPublicSigningKey(p))),
    contentKey: config.contentKey,
    guard: config.guard,
    profile: config.guard.profile,
  });
}

// --- request handling -----------------------------------------------------------------------

interface Slot {
  released: boolean;
  work?: Promise<unknown>;
}

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

const TENSOR_BODY_SCHEMA = {
  type: 'object',
  required: ['tensor'],
  additionalProperties: false,
  properties: {
    tensor: {
      type: 'object',
      required: ['dims', 'data'],
      additionalProperties: false,
      properties: {
        dims: { type: 'array', items: { type: 'integer', minimum: 1 }, minItems: 1, maxItems: 8 },
        data: { type: 'array', items: { type: 'number' }, maxItems: 16_777_216 },
      },
    },
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
    default:
      return { check: 'unknown', score: 0, threshold: 0 };
  }
}

export async function buildAgentApp(
  config: AgentConfig,
  runtime: AgentRuntime,
  o: BuildAgentAppOptions = {},
): Promise<{ app: FastifyInstance; metrics: AgentMetrics }> {
  const metrics = o.metrics ?? createAgentMetrics();
  const limits = config.limits;
  const app = Fastify({
    ...(o.logger ? { loggerInstance: o.logger as FastifyBaseLogger } : { logger: false }),
    bodyLimit: limits.bodyBytes,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    connectionTimeout: limits.requestTimeoutMs,
    forceCloseConnections: 'idle',
    return503OnClosing: true,
  });
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
  // Only the three input types are parsed; any other body is refused (415) without being read.
  app.removeContentTypeParser('text/plain');
  app.addContentTypeParser(
    ['image/png', 'image/jpeg'],
    { parseAs: 'buffer', bodyLimit: limits.bodyBytes },
    (_req, body, done) => done(null, body),
  );

  let inflight = 0;
  const release = (slot: Slot) => {
    if (slot.released) return;
    slot.released = true;
    inflight--;
    metrics.inflight.set(inflight);
  };
  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unknown';
    metrics.requests.inc({ route, status: String(reply.statusCode) });
    metrics.duration.observe({ route }, reply.elapsedTime / 1000);
  });

  app.get('/healthz', { schema: { tags: ['service'], summary: 'liveness and what is loaded' } }, async () => ({
    status: 'ok',
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
    inflight,
    review: o.review ? { keyId: o.review.keyId, spooled: o.review.spool.items } : null,
    ...(o.health?.() ?? {}),
  }));
  if (config.metrics.enabled) {
    app.get('/metrics', { schema: { hide: true } }, async (_req, reply) => {
      void reply.header('content-type', metrics.registry.contentType);
      return metrics.registry.metrics();
    });
  }
  if (config.openapi.enabled) app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  const modelInfo = { name: runtime.primary.metadata.name, version: runtime.primary.metadata.version };
  const tensorDims = [1, runtime.shape.channels, runtime.shape.height, runtime.shape.width];

  async function process(req: FastifyRequest, t0: number): Promise<InferResponse> {
    const type = String(req.headers['content-type'] ?? '')
      .split(';')[0]!
      .trim()
      .toLowerCase();
    if (type !== 'image/png' && type !== 'image/jpeg' && type !== 'application/json') {
      throw new EdgeguardError(
        'EG_UNSUPPORTED_MEDIA_TYPE',
        'send the input as image/png, image/jpeg or application/json (a tensor).',
      );
    }
    // Everything derived from the input is wiped when the request ends, on every path.
    const wipeLater: Array<{ fill(v: number): unknown }> = [];
    try {
      return await processInput(req, type, t0, wipeLater);
    } finally {
      for (const b of wipeLater) b.fill(0);
    }
  }

  async function processInput(
    req: FastifyRequest,
    type: string,
    t0: number,
    wipeLater: Array<{ fill(v: number): unknown }>,
  ): Promise<InferResponse> {
    const timings: Record<string, number> = {};
    let reviewBytes: () => Buffer;
    let input: GuardedInput;
    if (type === 'image/png' || type === 'image/jpeg') {
      const bytes = req.body as Buffer;
      wipeLater.push(bytes);
      reviewBytes = () => bytes;
      input = { kind: 'image', bytes, format: type };
    } else {
      const { dims, data } = (req.body as { tensor: { dims: number[]; data: number[] } }).tensor;
      wipeLater.push(data);
      input = { kind: 'tensor', dims, data };
      reviewBytes = () => {
        const b = Buffer.from(JSON.stringify({ tensor: { dims: tensorDims, data: Array.from(checked.tensor) } }));
        wipeLater.push(b);
        return b;
      };
    }
    const checkStart = performance.now();
    const checked = await checkInputKeeping(runtime, input, wipeLater);
    timings.decodeMs = checkStart - t0 + checked.decodeMs;
    metrics.stage.observe({ stage: 'decode' }, timings.decodeMs / 1000);
    const r = checked.result;
    for (const [k, v] of Object.entries(r.timings)) {
      if (typeof v === 'number') {
        timings[k] = v;
        metrics.stage.observe({ stage: k.replace(/Ms$/, '') === 'total' ? 'guard' : k.replace(/Ms$/, '') }, v / 1000);
      }
    }
    metrics.verdicts.inc({ verdict: r.verdict });
    let review: InferResponse['review'] = null;
    if (o.review && config.review.verdicts.includes(r.verdict as 'flag' | 'reject')) {
      try {
        const { id } = await o.review.submit(
          {
            contentType: type === 'image/png' || type === 'image/jpeg' ? type : 'application/json',
            verdict: r.verdict,
            reasons: r.reasons,
            ...(r.answer
              ? { answer: { source: r.answer.source, label: r.answer.label, confidence: r.answer.confidence } }
              : {}),
            ...(r.primary ? { primary: { label: r.primary.label, confidence: r.primary.confidence } } : {}),
            model: {
              name: modelInfo.name,
              version: modelInfo.version,
              headerSha256: runtime.primary.provenance.headerSha256,
            },
          },
          reviewBytes(),
        );
        metrics.reviewSealed.inc();
        review = { queued: true, id };
      } catch (e) {
        req.log.error({ err: e }, 'could not queue the input for review');
        review = { queued: false };
      }
    }
    if (o.journal && (r.verdict === 'flag' || r.verdict === 'reject')) {
      const common = {
        ...guardFinding(r),
        queuedForReview: review?.queued ?? false,
        reasons: [...new Set(r.reasons.map((x) => x.code))].slice(0, 16),
        model: `${modelInfo.name}@${modelInfo.version}`,
        modelSha256: runtime.primary.provenance.headerSha256,
      };
      if (r.verdict === 'flag') o.journal.record('guard.flagged', 'success', common);
      else o.journal.record('guard.rejected', 'denied', common);
    }
    timings.totalMs = performance.now() - t0;
    metrics.stage.observe({ stage: 'total' }, timings.totalMs / 1000);
    const a = r.answer;
    return {
      requestId: req.id,
      verdict: r.verdict,
      label: a?.label ?? null,
      index: a?.index ?? null,
      confidence: a?.confidence ?? null,
      source: a?.source ?? null,
      scores: a?.scores ?? null,
      reasons: r.reasons,
      primary: r.primary ? { label: r.primary.label, confidence: r.primary.confidence } : null,
      review,
      model: modelInfo,
      timings,
    };
  }

  app.post(
    '/v1/infer',
    {
      schema: {
        tags: ['inference'],
        summary: 'classify one input behind the guard',
        description:
          'Send image/png or image/jpeg bytes, or application/json {"tensor":{"dims":[1,C,H,W],"data":[...0..1 values]}}. The verdict is accept (primary answer), flag (fallback answer; the input is sealed to the review key) or reject (no answer). 429 when the concurrency limit is reached.',
        body: {
          content: {
            'application/json': { schema: TENSOR_BODY_SCHEMA },
            'image/png': { schema: {} },
            'image/jpeg': { schema: {} },
          },
        },
        response: {
          200: INFER_RESPONSE_SCHEMA,
          400: ERROR_RESPONSE_SCHEMA,
          413: ERROR_RESPONSE_SCHEMA,
          415: ERROR_RESPONSE_SCHEMA,
          422: ERROR_RESPONSE_SCHEMA,
          429: ERROR_RESPONSE_SCHEMA,
          503: ERROR_RESPONSE_SCHEMA,
        },
      },
      // The limit is checked before the body is read, so an overload costs no buffering.
      onRequest: async (req, reply) => {
        if (inflight >= limits.concurrency) {
          metrics.overload.inc();
          throw new EdgeguardError(
            'EG_OVERLOADED',
            `the service is at its concurrency limit (${limits.concurrency} requests); retry shortly.`,
          );
        }
        inflight++;
        metrics.inflight.set(inflight);
        const slot: Slot = { released: false };
        req.egSlot = slot;
        // The response is finished or the connection is gone (client abort, request timeout):
        // a request that never reached its work frees the slot here; one that did, when the work ends.
        reply.raw.once('close', () => {
          if (!slot.work) release(slot);
        });
      },
    },
    async (req) => {
      const slot = req.egSlot!;
      const t0 = performance.now();
      const work = process(req, t0);
      slot.work = work;
      // The slot is held until the work really ends, even after a timeout answer.
      work.then(
        () => release(slot),
        () => release(slot),
      );
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new EdgeguardError(
                'EG_TIMEOUT',
                `the inference took longer than limits.inferenceTimeoutMs (${limits.inferenceTimeoutMs} ms).`,
              ),
            ),
          limits.inferenceTimeoutMs,
        );
      });
      try {
        return await Promise.race([work, timeout]);
      } finally {
        clearTimeout(timer);
      }
    },
  );
  return { app, metrics };
}

export interface RunningAgent {
  app: FastifyInstance;
  runtime: AgentRuntime;
  metrics: AgentMetrics;
  review?: ReviewQueue;
  /** The device identity of `upload`, its certificate renewal and the audit journal. */
  identity?: AgentIdentity;
  renewer?: CertificateRenewer;
  journal?: AgentJournal;
  /** http://127.0.0.1:PORT, or unix:PATH */
  url: string;
  port?: number;
  socket?: string;
  /** Graceful shutdown; `reason` goes into the journal's agent.stopped event. */
  close(reason?: string): Promise<void>;
}

export interface StartAgentOptions {
  logger?: Logger;
  /** Override the review sink (tests); by default the control plane from `upload`, if configured. */
  reviewSink?: ReviewSink;
  /** Wall clock of the certificate renewal schedule (tests, the demo); default Date.now. */
  renewalClock?: () => number;
}

/** SHA-256 of the resolved configuration as JSON with sorted keys: which configuration ran. */
export function configDigest(config: AgentConfig): string {
  const sorted = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(sorted)
      : v && typeof v === 'object'
        ? Object.fromEntries(
            Object.keys(v)
              .sort()
              .map((k) => [k, sorted((v as Record<string, unknown>)[k])]),
          )
        : v;
  return createHash('sha256')
    .update(JSON.stringify(sorted(config)))
    .digest('hex');
}

async function fileDigest(path: string | undefined): Promise<string | undefined> {
  if (!path) return undefined;
  return createHash('sha256')
    .update(await readFile(path).catch(() => Buffer.alloc(0)))
    .digest('hex');
}

/** Load everything, listen, and return a handle whose close() shuts down gracefully. */
export async function startAgent(config: AgentConfig, o: StartAgentOptions = {}): Promise<RunningAgent> {
  const startedAt = Date.now();
  const metrics = createAgentMetrics();
  const log = o.logger;
  // Everything opened so far, closed in reverse order if a later step fails.
  const undo: Array<() => Promise<void> | void> = [];
  const unwind = async () => {
    for (const f of undo.reverse()) await Promise.resolve(f()).catch(() => undefined);
  };
  let identity: AgentIdentity | undefined;
  let journal: AgentJournal | undefined;
  let renewer: CertificateRenewer | undefined;
  let review: ReviewQueue | undefined;
  let runtime: AgentRuntime;
  try {
    if (config.upload) {
      identity = await AgentIdentity.fromConfig(config.upload);
      undo.push(() => identity!.close());
      metrics.certNotAfter.set(Math.floor(identity.certificate.notAfter.getTime() / 1000));
    }
    if (identity && config.journal.enabled !== false) {
      const privateKey = createPrivateKey(identity.keyPem);
      const j = config.journal;
      journal = await AgentJournal.open({
        path: j.path!,
        privateKey,
        publicKey: createPublicKey(privateKey),
        deviceId: identity.deviceId,
        transport: identity.client(),
        intervalMs: j.forwardIntervalMs,
        backoffMaxMs: j.backoffMaxMs,
        batch: j.batch,
        maxPending: j.maxPending,
        ...(log ? { log } : {}),
        events: {
          appended: (n, seq) => {
            metrics.journalEntries.inc(n);
            metrics.journalHeadSeq.set(seq);
          },
          dropped: (n) => metrics.journalDropped.inc(n),
          forwarded: (r) => metrics.journalForwardedSeq.set(r.serverSeq),
          forwardFailed: () => metrics.journalForwardFailures.inc(),
        },
      });
      metrics.journalHeadSeq.set(journal.journal.lastSeq);
      undo.push(() => journal!.close(0));
    }
    if (config.review.enabled) {
      let pem: string;
      try {
        pem = await readFile(config.review.publicKey!, 'utf8');
      } catch (e) {
        throw fsError(e, config.review.publicKey!, 'read the review public key');
      }
      const reviewEvent = (itemId: string, action: 'queued' | 'uploaded' | 'dropped', reason?: string) =>
        journal?.record('review.item', action === 'dropped' ? 'failure' : 'success', {
          itemId,
          action,
          ...(reason ? { reason } : {}),
        });
      review = await ReviewQueue.open({
        publicKey: parseSealPublicKeyPem(pem, config.review.publicKey),
        dir: config.review.spool.dir,
        maxItems: config.review.spool.maxItems,
        maxBytes: config.review.spool.maxBytes,
        sink: o.reviewSink ?? (identity ? fleetReviewSink(identity.client()) : undefined),
        intervalMs: config.upload?.intervalMs,
        log,
        events: {
          dropped: (e, reason) => {
            metrics.reviewDropped.inc({ reason });
            reviewEvent(e.id, 'dropped', `spool ${reason}`);
          },
          changed: (items, bytes) => {
            metrics.spoolItems.set(items);
            metrics.spoolBytes.set(bytes);
          },
          sealed: (id) => reviewEvent(id, 'queued'),
          uploaded: (id) => {
            metrics.reviewUploaded.inc();
            reviewEvent(id, 'uploaded');
          },
          uploadFailed: () => metrics.reviewUploadFailures.inc(),
        },
      });
      undo.push(() => review!.close());
    }
    try {
      runtime = await loadAgentRuntime(config);
    } catch (e) {
      const code = e instanceof EdgeguardError ? e.code : 'EG_INTERNAL';
      journal?.record('model.load_failed', 'failure', { name: basename(config.models.primary).slice(0, 200), code });
      throw e;
    }
    undo.push(() => runtime.release());
  } catch (e) {
    await unwind();
    throw e;
  }
  if (journal) {
    const seen = new Set<LoadedModel>();
    for (const m of [runtime.primary, runtime.ensemble, runtime.fallback]) {
      if (!m || seen.has(m)) continue;
      seen.add(m);
      journal.record('model.loaded', 'success', {
        modelSha256: m.provenance.headerSha256,
        name: m.metadata.name,
        version: m.metadata.version,
        signerKeyId: m.provenance.signedBy,
        keyProvider: runtime.key.provider,
      });
    }
  }
  if (identity && config.renewal.enabled) {
    const r = config.renewal;
    const id = identity;
    renewer = new CertificateRenewer({
      identity: id,
      maxSleepMs: r.maxSleepMs,
      backoffInitialMs: r.backoffInitialMs,
      backoffMaxMs: Math.max(r.backoffInitialMs, r.backoffMaxMs),
      ...(o.renewalClock ? { now: o.renewalClock } : {}),
      ...(log ? { log } : {}),
      events: {
        renewed: (previousSerial, cert) => {
          metrics.certRenewals.inc({ result: 'renewed' });
          metrics.certRenewalLastSuccess.set(1);
          metrics.certRenewalLastTime.set(Math.floor(Date.now() / 1000));
          metrics.certNotAfter.set(Math.floor(cert.notAfter.getTime() / 1000));
          journal?.record(
            'cert.renewed',
            'success',
            { previousSerial, serial: id.serial, notAfter: cert.notAfter.toISOString() },
            id.serial,
          );
        },
        failed: (err) => {
          metrics.certRenewals.inc({ result: 'failed' });
          metrics.certRenewalLastSuccess.set(0);
          metrics.certRenewalLastTime.set(Math.floor(Date.now() / 1000));
          journal?.record(
            'cert.renewed',
            'failure',
            { previousSerial: id.serial, reason: `${err.code}: ${err.message}`.slice(0, 2000) },
            id.serial,
          );
        },
      },
    });
    undo.push(() => renewer!.close());
  }
  const health = () => ({
    ...(identity
      ? {
          certificate: renewer
            ? renewer.status()
            : {
                deviceId: identity.deviceId,
                serial: identity.serial,
                notAfter: identity.certificate.notAfter.toISOString(),
                renewal: 'disabled',
              },
        }
      : {}),
    ...(journal ? { journal: journal.status() } : {}),
  });
  let app: FastifyInstance;
  let url: string;
  let port: number | undefined;
  const socket = config.listen.socket;
  try {
    ({ app } = await buildAgentApp(config, runtime, {
      logger: log,
      review,
      metrics,
      ...(journal ? { journal } : {}),
      health,
    }));
  } catch (e) {
    await unwind();
    throw e;
  }
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
      url = `unix:${socket}`;
    } else {
      await app.listen({ host: config.listen.host, port: config.listen.port });
      port = (app.server.address() as AddressInfo).port;
      const host = config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host;
      url = `http://${host}:${port}`;
    }
  } catch (e) {
    await app.close().catch(() => undefined);
    await unwind();
    if (e instanceof EdgeguardError) throw e;
    throw new EdgeguardError(
      'EG_IO',
      `could not listen on ${socket ?? `${config.listen.host}:${config.listen.port}`} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}).`,
      { cause: e },
    );
  }
  if (journal) {
    const profile = await fileDigest(config.guard.profile);
    journal.record('agent.started', 'success', {
      configSha256: configDigest(config),
      ...(profile ? { guardProfileSha256: profile } : {}),
      keyProvider: runtime.key.provider,
      pid: process.pid,
    });
  }
  review?.start();
  renewer?.start();
  journal?.start();
  let closing: Promise<void> | undefined;
  const close = (reason = 'shutdown') => {
    closing ??= (async () => {
      const force = setTimeout(() => app.server.closeAllConnections(), config.limits.shutdownGraceMs);
      force.unref();
      try {
        await app.close();
      } finally {
        clearTimeout(force);
        await renewer?.close();
        await review?.close();
        journal?.record('agent.stopped', 'success', {
          reason: reason.slice(0, 2000),
          uptimeS: Math.max(0, Math.floor((Date.now() - startedAt) / 1000)),
        });
        await journal?.close().catch((e: unknown) => log?.error({ err: e }, 'could not close the audit journal'));
        identity?.close();
        await runtime.release();
        if (socket) await unlink(socket).catch(() => undefined);
      }
    })();
    return closing;
  };
  return {
    app,
    runtime,
    metrics,
    review,
    ...(identity ? { identity } : {}),
    ...(renewer ? { renewer } : {}),
    ...(journal ? { journal } : {}),
    url,
    ...(port !== undefined ? { port } : {}),
    ...(socket ? { socket } : {}),
    close,
  };
}
