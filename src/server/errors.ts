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
  EG_NOT_FOUND: 404,
  EG_EXISTS: 409,
  EG_RATE_LIMITED: 429,
  EG_UNSUPPORTED: 422,
  EG_PKI: 422,
  EG_AUDIT_UNAVAILABLE: 503,
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
  const message = fe.validation ? `the request is invalid: ${fe.message}.` : fe.message;
  void reply.status(status).send({ error: { code, message } });
}
