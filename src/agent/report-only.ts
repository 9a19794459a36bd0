/**
 * The agent when the TPM refuses its model key (EG_TPM_POLICY: the boot state is neither the
 * provisioned one nor one the operator authorized): it serves no inference, but keeps what lets
 * the fleet see and fix the device: its identity (the TLS key sits under the identity key, not
 * the PCR policy), certificate renewal, the journal, and the attestation reporter, whose evidence
 * the control plane appraises (and refuses, with its reasons). /healthz answers 503 with the
 * refusal and the last verdict; POST /v1/infer answers 503 with the refusal's code.
 */
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { EdgeguardError } from '../errors/index.ts';
import type { AgentConfig } from './config.ts';
import { createAgentMetrics, listen } from './serve-http.ts';
import {
  Opened,
  healthOf,
  openIdentityAndJournal,
  startRenewer,
  startReporter,
  type StartAgentOptions,
} from './fleet-parts.ts';

export interface ReportingAgent {
  url: string;
  /** Why no inference is served. */
  refusal: EdgeguardError;
  app: FastifyInstance;
  close(reason?: string): Promise<void>;
}

/** Whether `startReportingAgent` can stand in for a refused `startAgent`: attestation on, a device identity. */
export function canReportOnly(config: AgentConfig, e: unknown): e is EdgeguardError {
  return e instanceof EdgeguardError && e.code === 'EG_TPM_POLICY' && config.attestation.enabled && !!config.upload;
}

export async function startReportingAgent(
  config: AgentConfig,
  refusal: EdgeguardError,
  o: StartAgentOptions = {},
): Promise<ReportingAgent> {
  const metrics = createAgentMetrics();
  const opened = new Opened();
  const closeAll = () => opened.closeAll();
  try {
    const { identity, journal } = await openIdentityAndJournal(config, metrics, o.logger, opened);
    // canReportOnly: the refused agent has an upload block, so an identity.
    if (!identity) throw new EdgeguardError('EG_CONFIG', 'reporting without inference needs the upload block.');
    const renewer = startRenewer(config, o, metrics, { identity, journal });
    if (renewer) opened.push(() => renewer.close());
    const reporter = await startReporter(config, { identity }, o.logger);
    opened.push(() => reporter.stop());
    const app = Fastify({ ...(o.logger ? { loggerInstance: o.logger as FastifyBaseLogger } : { logger: false }) });
    const refused = { error: { code: refusal.code, message: refusal.message } };
    app.get('/healthz', async (_req, reply) =>
      reply.status(503).send({
        status: 'refused',
        ...refused,
        ...healthOf({ identity, renewer, journal, reporter }),
      }),
    );
    // Answered before any body is read (whatever its type): nothing of an input is taken in.
    app.post(
      '/v1/infer',
      { onRequest: async (_req, reply) => reply.status(503).header('connection', 'close').send(refused) },
      async () => refused,
    );
    if (config.metrics.enabled)
      app.get('/metrics', async (_req, reply) => {
        void reply.header('content-type', metrics.registry.contentType);
        return metrics.registry.metrics();
      });
    const where = await listen(app, config);
    opened.push(() => app.close());
    renewer?.start();
    journal?.start();
    reporter.start();
    return { url: where.url, refusal, app, close: async () => closeAll() };
  } catch (e) {
    await closeAll();
    throw e;
  }
}
