/** The enrollment endpoints: the only ones reachable without a client certificate, rate limited. */
import type { FastifyError, FastifyInstance, FastifyRequest, onErrorAsyncHookHandler } from 'fastify';
import { protocol } from '../../attest/index.ts';
import { EdgeguardError } from '../../errors/index.ts';
import type { ControlPlaneContext } from '../context.ts';
import type { EnrollmentService } from '../enrollment.ts';
import { ERROR_SCHEMA, errorReply } from '../errors.ts';

/** A device not enrolled yet is known by its address only. */
function unenrolled(req: FastifyRequest) {
  return { kind: 'device' as const, id: `unenrolled@${req.ip}` };
}

export async function enrollRoutes(
  app: FastifyInstance,
  ctx: ControlPlaneContext,
  service: EnrollmentService,
): Promise<void> {
  // Reachable without a certificate: a few kilobytes of evidence, never the server's general limit.
  const bodyLimit = ctx.policy.limits.anonymousBodyBytes;
  const rateLimit = { max: ctx.policy.enrollRateLimit.max, timeWindow: ctx.policy.enrollRateLimit.timeWindowMs };
  const errors = { 400: ERROR_SCHEMA, 403: ERROR_SCHEMA, 409: ERROR_SCHEMA, 429: ERROR_SCHEMA };
  /** Counted and summarised (enroll-failures.ts): anonymous callers write no log entry of their own. */
  const failure =
    (stage: 'start' | 'finish'): onErrorAsyncHookHandler =>
    async (req, _reply, error) => {
      const { code } = errorReply(error as FastifyError);
      const details = (error as EdgeguardError).details;
      ctx.enrollFailures.record({
        stage,
        reason: typeof details?.reason === 'string' ? details.reason : code,
        address: req.ip,
        ekSha256: typeof details?.ekSha256 === 'string' ? details.ekSha256 : undefined,
      });
    };
  /** The device exists now (pending, or approved by the auto-approve list). */
  const enrolled = async (r: { deviceId: string }) => {
    const device = await ctx.store.getDevice(r.deviceId);
    if (device === undefined) return;
    await ctx.events.emit('device.enrollment_requested', {
      actor: { kind: 'device', id: device.id },
      subject: device.id,
      outcome: 'success',
      details: { deviceId: device.id, ekSha256: device.ek_pub_sha256, keyProvider: device.key_provider },
    });
  };

  app.post(
    '/v1/enroll/nonce',
    {
      config: { rateLimit },
      bodyLimit,
      schema: {
        tags: ['enrollment'],
        summary: 'A single-use enrollment nonce',
        response: { 200: protocol.jsonSchemaOf(protocol.NonceResponse), 429: ERROR_SCHEMA },
      },
    },
    async () => {
      const r = await service.issueNonce();
      ctx.metrics.enrollments.inc({ stage: 'nonce', result: 'ok' });
      return r;
    },
  );

  app.post(
    '/v1/enroll/start',
    {
      config: { rateLimit },
      bodyLimit,
      onError: failure('start'),
      schema: {
        tags: ['enrollment'],
        summary: 'Send TPM evidence and a CSR; receive a MakeCredential challenge (software devices: enrolled at once)',
        body: protocol.jsonSchemaOf(protocol.EnrollStart),
        response: {
          200: {
            oneOf: [protocol.jsonSchemaOf(protocol.ChallengeResponse), protocol.jsonSchemaOf(protocol.EnrollFinished)],
          },
          ...errors,
        },
      },
    },
    async (req) => {
      try {
        const r = await service.start(req.body as protocol.EnrollStart);
        ctx.metrics.enrollments.inc({ stage: 'start', result: 'ok' });
        if ('deviceId' in r) await enrolled(r);
        else
          await ctx.events.emit('admin.action', {
            actor: unenrolled(req),
            outcome: 'success',
            details: { action: 'enrollment start', detail: 'challenge issued' },
          });
        return r;
      } catch (e) {
        ctx.metrics.enrollments.inc({ stage: 'start', result: (e as EdgeguardError).code ?? 'error' });
        throw e;
      }
    },
  );

  app.post(
    '/v1/enroll/finish',
    {
      config: { rateLimit },
      bodyLimit,
      onError: failure('finish'),
      schema: {
        tags: ['enrollment'],
        summary: 'Answer the challenge with the credential TPM2_ActivateCredential released',
        body: protocol.jsonSchemaOf(protocol.EnrollFinish),
        response: { 200: protocol.jsonSchemaOf(protocol.EnrollFinished), ...errors },
      },
    },
    async (req) => {
      try {
        const r = await service.finish(req.body as protocol.EnrollFinish);
        ctx.metrics.enrollments.inc({ stage: 'finish', result: 'ok' });
        await enrolled(r);
        return r;
      } catch (e) {
        ctx.metrics.enrollments.inc({ stage: 'finish', result: (e as EdgeguardError).code ?? 'error' });
        throw e;
      }
    },
  );

  app.get(
    '/v1/enroll/:deviceId/certificate',
    {
      config: { rateLimit: { ...rateLimit, max: rateLimit.max * 10 } },
      schema: {
        tags: ['enrollment'],
        summary: 'Poll for the device certificate (202 while pending); needs the x-edgeguard-poll-token header',
        params: {
          type: 'object',
          properties: { deviceId: { type: 'string', pattern: '^dev-[0-9a-f]{16}$' } },
          required: ['deviceId'],
        },
        headers: { type: 'object', properties: { 'x-edgeguard-poll-token': { type: 'string', maxLength: 100 } } },
        response: {
          200: protocol.jsonSchemaOf(protocol.CertificateResponse),
          202: { type: 'object', properties: { status: { type: 'string' } } },
          401: ERROR_SCHEMA,
          403: ERROR_SCHEMA,
        },
      },
    },
    async (req, reply) => {
      const { deviceId } = req.params as { deviceId: string };
      const token = req.headers['x-edgeguard-poll-token'];
      const r = await service.pollCertificate(deviceId, typeof token === 'string' ? token : undefined);
      if ('status' in r) return reply.status(202).send(r);
      return r;
    },
  );
}
