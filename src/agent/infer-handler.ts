/**
 * The work of one `POST /v1/infer` request once its body is complete and has its concurrency slot:
 * the body decoded by content type (infer-body.ts) and checked on the runtime the request started
 * with (src/runtime's checkInput: what one input means), then what the verdict leads to (the input
 * sealed to the review queue, a flag or rejection journaled, the stage timings observed) and the
 * answer, with everything derived from the input wiped on every path; and the inference timeout.
 * The app, its routes and the hooks that run before this are http-app.ts.
 */
import { performance } from 'node:perf_hooks';
import type { FastifyRequest } from 'fastify';
import { EdgeguardError } from '../errors/index.ts';
import type { GuardResult } from '../guard/index.ts';
import type { ModelInput } from '../inference/index.ts';
import { checkInputKeeping, type GuardedInput, type GuardedModel, type Wipeable } from '../runtime/index.ts';
import type { AgentConfig } from './config.ts';
import { decodeRequest, inputTypeOf, type InputType } from './infer-body.ts';
import type { AgentJournal } from './agent-journal.ts';
import type { ReviewQueue } from './review.ts';
import type { ProbingGate } from './probing-gate.ts';
import type { ServedRuntime } from './served-runtime.ts';
import type { AgentMetrics } from './serve-http.ts';

/** The 200 answer of `POST /v1/infer` (its schema, for OpenAPI, is the route's: http-app.ts). */
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

/** Where a verdict goes besides the answer (the app's options, buildAgentApp). */
export interface InferenceOutlets {
  review: ReviewQueue | undefined;
  /** Guard flags and rejections are journaled here (never the input). */
  journal: AgentJournal | undefined;
}

/** One request's work, started by the route's handler once the request holds its slot (`t0`: performance.now() then). */
export type InferenceHandler = (req: FastifyRequest, t0: number) => Promise<InferResponse>;

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

/** The work's result, or EG_TIMEOUT after `ms` (the work itself goes on: its slot is held until it ends). */
export async function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
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
export function inferenceHandler(
  config: AgentConfig,
  served: ServedRuntime,
  o: InferenceOutlets,
  metrics: AgentMetrics,
  probing: ProbingGate | undefined,
): InferenceHandler {
  return (req, t0) => served.use((runtime) => handleInference(config, runtime, o, metrics, probing, req, t0));
}

/** One request on the runtime it started with (a release switch meanwhile does not touch it). */
async function handleInference(
  config: AgentConfig,
  runtime: GuardedModel,
  o: InferenceOutlets,
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
