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
};

export function httpStatusOf(code: ErrorCode): number {
  return STATUS[code] ?? 500;
}

export const ERROR_SCHEMA = {
  type: 'object',
  properties: { error: { type: 'object', properties: { code: { type: 'string' }, message: { type: 'string' } } } },
} as const;

export function errorHandler(
  error: FastifyError | EdgeguardError | Error,
  request: FastifyRequest,
  reply: FastifyReply,
): void {
  if (error instanceof EdgeguardError) {
    const status = httpStatusOf(error.code);
    if (status >= 500) request.log.error({ err: error }, 'request failed');
    else request.log.info({ code: error.code, reason: error.details?.reason }, error.message);
    void reply.status(status).send({ error: { code: error.code, message: error.message } });
    return;
  }
  const fe = error as FastifyError;
  if (fe.validation) {
    void reply
      .status(400)
      .send({ error: { code: 'EG_BAD_REQUEST', message: `the request is invalid: ${fe.message}.` } });
    return;
  }
  if (fe.statusCode === 429) {
    void reply.status(429).send({ error: { code: 'EG_RATE_LIMITED', message: fe.message } });
    return;
  }
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    void reply.status(fe.statusCode).send({ error: { code: 'EG_BAD_REQUEST', message: fe.message } });
    return;
  }
  request.log.error({ err: error }, 'unexpected error');
  void reply
    .status(500)
    .send({ error: { code: 'EG_INTERNAL', message: 'internal server error; see the server log.' } });
}
