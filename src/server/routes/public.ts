/** Routes any client may call without a certificate: health, the fleet CA, the CRL. */
import type { FastifyInstance } from 'fastify';
import { sql } from 'kysely';
import { crlPem, x509 } from '../../pki/index.ts';
import type { ControlPlaneContext } from '../context.ts';

const HEALTH_SCHEMA = {
  type: 'object',
  properties: {
    status: { type: 'string' },
    database: { type: 'string' },
    problems: { type: 'array', items: { type: 'string' } },
  },
} as const;

export async function publicRoutes(
  app: FastifyInstance,
  ctx: ControlPlaneContext,
  crl: { der(): Promise<Buffer> },
): Promise<void> {
  app.get(
    '/healthz',
    {
      schema: {
        tags: ['operations'],
        summary: 'Liveness and database reachability',
        response: {
          200: HEALTH_SCHEMA,
          503: HEALTH_SCHEMA,
        },
      },
    },
    async (_req, reply) => {
      try {
        await sql`select 1`.execute(ctx.store.db);
      } catch {
        return reply.status(503).send({ status: 'unavailable', database: ctx.store.dialect });
      }
      const problems = (await Promise.all(ctx.healthChecks.map((check) => check()))).filter((p) => p !== undefined);
      if (problems.length > 0)
        return reply.status(503).send({ status: 'unavailable', database: ctx.store.dialect, problems });
      return { status: 'ok', database: ctx.store.dialect };
    },
  );

  app.get(
    '/v1/ca',
    {
      schema: {
        tags: ['pki'],
        summary: 'The fleet root and issuing CA certificates (PEM)',
        response: {
          200: { type: 'object', properties: { fleetCa: { type: 'string' }, issuingCa: { type: 'string' } } },
        },
      },
    },
    async () => ({ fleetCa: ctx.ca.rootPem, issuingCa: ctx.ca.issuingPem }),
  );

  app.get(
    '/v1/crl',
    {
      schema: {
        tags: ['pki'],
        summary: 'Certificate revocation list of the issuing CA (DER, application/pkix-crl; ?format=pem for PEM)',
        querystring: {
          type: 'object',
          properties: { format: { type: 'string', enum: ['der', 'pem'] } },
          additionalProperties: false,
        },
      },
    },
    async (req, reply) => {
      const der = await crl.der();
      if ((req.query as { format?: string }).format === 'pem') {
        return reply.type('application/x-pem-file').send(crlPem(new x509.X509Crl(der)));
      }
      return reply.type('application/pkix-crl').send(der);
    },
  );
}
