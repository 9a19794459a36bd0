/** EdgeguardError codes as HTTP statuses; the body is always `{ error: { code, message } }`. */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { EdgeguardError, type ErrorCode } from '../errors/index.ts';

const STATUS: Partial<Record<ErrorCode, number>> = {
  EG_BAD_REQUEST: 400,
  EG_USAGE: 400,
  EG_FORMAT: 400,
  EG_TPM_STRUCTURE: 400,
  EG_UNAUTHORIZED: 401,
  EG_FORBIDDEN: 403,
  EG_ENROLL: 403,
  EG_ATTEST_REFUSED: 403,
  EG_NOT_FOUND: 404,
  EG_EXISTS: 409,
  EG_RATE_LIMITED: 429,
  EG_UNSUPPORTED: 422,
  EG_PKI: 422,
  EG_PAYLOAD_TOO_LARGE: 413,
  EG_UNSUPPORTED_MEDIA_TYPE: 415,
  EG_TIMEOUT: 408,
  EG_AUDIT_UNAVAILABLE: 503,
  EG_AUDIT_BEHIND: 503,
};

/** Framework errors by status: their own EG code, and a sentence instead of fastify's internals. */
const FRAMEWORK: Record<number, { code: ErrorCode; message: string }> = {
  408: { code: 'EG_TIMEOUT', message: 'the request did not arrive in time; send it whole, without pauses.' },
  413: { code: 'EG_PAYLOAD_TOO_LARGE', message: 'the request body is larger than this route accepts.' },
  414: { code: 'EG_BAD_REQUEST', message: 'a path segment is longer than any identifier this API uses.' },
  415: { code: 'EG_UNSUPPORTED_MEDIA_TYPE', message: 'unsupported content type; send application/json.' },
};

export function httpStatusOf(code: ErrorCode): number {
  return STATUS[code] ?? 500;
}

export const ERROR_SCHEMA = {
  type: 'object',
  properties: { error: { type: 'object', properties: { code: { type: 'string' }, message: { type: 'string' } } } },
} as const;

/** The status and code a request failing with `error` is answered with. */
export function errorReply(error: FastifyError | EdgeguardError | Error): { status: number; code: ErrorCode } {
  if (error instanceof EdgeguardError) return { status: httpStatusOf(error.code), code: error.code };
  const fe = error as FastifyError;
  if (fe.validation) return { status: 400, code: 'EG_BAD_REQUEST' };
  if (fe.statusCode === 429) return { status: 429, code: 'EG_RATE_LIMITED' };
  const framework = fe.statusCode === undefined ? undefined : FRAMEWORK[fe.statusCode];
  if (framework) return { status: fe.statusCode!, code: framework.code };
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500)
    return { status: fe.statusCode, code: 'EG_BAD_REQUEST' };
  return { status: 500, code: 'EG_INTERNAL' };
}

export function errorHandler(
  error: FastifyError | EdgeguardError | Error,
  request: FastifyRequest,
  reply: FastifyReply,
): void {
  const { status, code } = errorReply(error);
  if (error instanceof EdgeguardError) {
    if (status >= 500) request.log.error({ err: error }, 'request failed');
    else request.log.info({ code, reason: error.details?.reason }, error.message);
    void reply.status(status).send({ error: { code, message: error.message } });
    return;
  }
  const fe = error as FastifyError;
  if (status === 500) {
    request.log.error({ err: error }, 'unexpected error');
    void reply.status(500).send({ error: { code, message: 'internal server error; see the server log.' } });
    return;
  }
  const message = fe.validation
    ? `the request is invalid: ${fe.message}.`
    : (FRAMEWORK[status]?.message ?? `the request is invalid: ${fe.message}.`);
  void reply.status(status).send({ error: { code, message } });
}
