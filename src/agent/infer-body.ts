/**
 * The checks of a `POST /v1/infer` body as it arrives, all before a concurrency slot is taken:
 * the four content types taken (any other is refused, 415, unread) and their parsers (tensor JSON
 * and .npy strictly, image bytes as sent), the body budget a large body waits in, unread, for room
 * in limits.bodyBytesInFlight, the deadline on the whole body and the image structure check on
 * each chunk as it arrives; then the complete body as the runtime's input. The route that runs
 * them, in its hooks, is http-app.ts; the request's work on the decoded body is infer-handler.ts.
 */
import { Transform, type Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { EdgeguardError, isEdgeguardError } from '../errors/index.ts';
import {
  MAX_INPUT_PIXELS,
  TENSOR_BODY_JSON_SCHEMA,
  parseNpy,
  parseTensorJson,
  wipeValues,
  type SuppliedTensor,
} from '../inference/index.ts';
import { imageStructureCheck, type GuardedInput, type Wipeable } from '../runtime/index.ts';
import type { AgentConfig } from './config.ts';
import { BodyBudget, announcedLength } from './body-budget.ts';
import { BodyTimeoutError, type AgentMetrics } from './serve-http.ts';

type Limits = AgentConfig['limits'];

/** The route's accepted bodies, for OpenAPI: the content-type parsers check them, strictly. */
export const INFER_BODY_SCHEMA = {
  content: {
    'application/json': { schema: TENSOR_BODY_JSON_SCHEMA },
    'application/x-npy': { schema: {} },
    'image/png': { schema: {} },
    'image/jpeg': { schema: {} },
  },
};

/** Only the four input types are parsed; any other body is refused (415) without being read. */
export function addInputParsers(app: FastifyInstance, bodyLimit: number): void {
  app.removeContentTypeParser(['text/plain', 'application/json']);
  app.addContentTypeParser(['image/png', 'image/jpeg'], { parseAs: 'buffer', bodyLimit }, (_req, body, done) =>
    done(null, body),
  );
  addTensorParsers(app, bodyLimit);
}

/** A malformed tensor body is the client's mistake: 400 with the parser's reason. */
function asBadRequest(e: unknown): unknown {
  return isEdgeguardError(e, 'EG_FORMAT') ? new EdgeguardError('EG_BAD_REQUEST', e.message, { cause: e }) : e;
}

/**
 * Tensor bodies become SuppliedTensor[] in the parser, under a strict schema (numbers only, no
 * unknown keys: nothing is coerced), so the route's JSON Schema (INFER_BODY_SCHEMA) only documents them.
 */
function addTensorParsers(app: FastifyInstance, bodyLimit: number): void {
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit }, (req, body, done) => {
    parseJson(req, body as string, (err, value) => {
      if (err) return done(err, undefined);
      try {
        done(null, parseTensorJson(value, 'the tensor body'));
      } catch (e) {
        done(asBadRequest(e) as Error, undefined);
      }
    });
  });
  app.addContentTypeParser('application/x-npy', { parseAs: 'buffer', bodyLimit }, (_req, body, done) => {
    const bytes = body as Buffer;
    try {
      done(null, [parseNpy(bytes)] satisfies SuppliedTensor[]);
    } catch (e) {
      done(asBadRequest(e) as Error, undefined);
    } finally {
      bytes.fill(0);
    }
  });
}

/** Bodies up to this size are never counted against limits.bodyBytesInFlight. */
const SMALL_BODY_BYTES = 64 * 1024;
/** Large requests waiting for room at most; more are refused at once. */
const MAX_WAITING_LARGE_BODIES = 1024;

/** The bytes of bodies read at once: limits.bodyBytesInFlight (default 4 bodies at the limit). */
export function createBodyBudget(limits: Limits, metrics: AgentMetrics): BodyBudget {
  return new BodyBudget({
    limitBytes: limits.bodyBytesInFlight ?? 4 * limits.bodyBytes,
    smallBytes: SMALL_BODY_BYTES,
    waitMs: limits.requestTimeoutMs,
    maxWaiting: MAX_WAITING_LARGE_BODIES,
    onRefused: () => metrics.bodyBudgetRefused.inc(),
    onWaiting: (n) => metrics.bodiesWaiting.set(n),
  });
}

/**
 * Room in the budget for this request's body, reserved before preParsing reads a byte of it
 * (waiting leaves it unread) and released when the response is done; refused, the connection is
 * closed (the unread body cannot be skipped).
 */
export async function reserveBody(
  budget: BodyBudget,
  req: FastifyRequest,
  reply: FastifyReply,
  bodyLimit: number,
): Promise<void> {
  try {
    const release = await budget.reserve(announcedLength(req.headers['content-length']), bodyLimit);
    if (reply.raw.destroyed || req.raw.destroyed) release();
    else reply.raw.once('close', release);
  } catch (e) {
    void reply.header('connection', 'close');
    throw e;
  }
}

/** A large body, as limits.bodyBytesInFlight counts them (no Content-Length: the body limit). */
export function isLargeBody(req: FastifyRequest, bodyLimit: number): boolean {
  return (announcedLength(req.headers['content-length']) ?? bodyLimit) > SMALL_BODY_BYTES;
}

/**
 * The body as a stream that fails with BodyTimeoutError (408) unless it ends within `ms`, so a
 * client sending a byte a second is cut off, whatever its Content-Length; and, for an image, with
 * EG_INPUT (422) as soon as its bytes cannot be such an image (the signature, then the PNG chunks
 * or JPEG segments: src/runtime/image-structure.ts), the rest unread and the connection closed: a
 * body that is not what it says costs the chunk where it goes wrong, not a megabyte and a decode.
 */
export function checkedBody(
  payload: Readable,
  req: FastifyRequest,
  reply: FastifyReply,
  ms: number,
  bodyLimit: number,
): Readable {
  const type = mediaTypeOf(req);
  const structure =
    type === 'image/png' || type === 'image/jpeg'
      ? imageStructureCheck(type, {
          bodyBytes: Math.min(announcedLength(req.headers['content-length']) ?? bodyLimit, bodyLimit),
          maxPixels: MAX_INPUT_PIXELS,
        })
      : undefined;
  const refuse = (error: EdgeguardError, done: (e: Error) => void) => {
    payload.unpipe(body);
    void reply.header('connection', 'close');
    done(error);
  };
  const body = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      const error = structure?.push(chunk);
      if (error) refuse(error, done);
      else done(null, chunk);
    },
    flush(done) {
      const error = structure?.end();
      if (error) refuse(error, done);
      else done();
    },
  });
  const timer = setTimeout(() => {
    payload.unpipe(body);
    body.destroy(new BodyTimeoutError(ms));
  }, ms);
  // Done with the body: it ended, or the answer went out without it (413 by Content-Length, 415).
  body.once('close', () => clearTimeout(timer));
  payload.once('end', () => clearTimeout(timer));
  reply.raw.once('close', () => clearTimeout(timer));
  payload.once('error', (e) => body.destroy(e));
  payload.pipe(body);
  return body;
}

const INPUT_TYPES = ['image/png', 'image/jpeg', 'application/json', 'application/x-npy'] as const;
export type InputType = (typeof INPUT_TYPES)[number];

/** The request's Content-Type without its parameters, in lower case ('' when there is none). */
function mediaTypeOf(req: FastifyRequest): string {
  return String(req.headers['content-type'] ?? '')
    .split(';')[0]!
    .trim()
    .toLowerCase();
}

/** The content type named by the request, one of the four the route takes. */
export function inputTypeOf(req: FastifyRequest): InputType {
  const type = mediaTypeOf(req);
  if (!(INPUT_TYPES as readonly string[]).includes(type)) {
    throw new EdgeguardError(
      'EG_UNSUPPORTED_MEDIA_TYPE',
      'send the input as image/png, image/jpeg, application/json or application/x-npy (a tensor).',
    );
  }
  return type as InputType;
}

/** The request body as the runtime's input; the body joins `wipeLater`. */
export function decodeRequest(req: FastifyRequest, type: InputType, wipeLater: Wipeable[]): GuardedInput {
  if (type === 'image/png' || type === 'image/jpeg') {
    const bytes = req.body as Buffer;
    wipeLater.push(bytes);
    return { kind: 'image', bytes, format: type };
  }
  const tensors = req.body as SuppliedTensor[];
  for (const t of tensors) wipeLater.push({ fill: () => wipeValues(t.values as number[]) });
  return { kind: 'tensors', tensors };
}
