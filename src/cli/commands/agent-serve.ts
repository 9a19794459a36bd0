/** `edgeguard agent serve --config agent.yaml`: the inference service behind the guard. */
import { Command } from 'commander';
import pino from 'pino';
import {
  canReportOnly,
  loadAgentConfig,
  loadAgentRuntime,
  startAgent,
  startReportingAgent,
  type AgentConfig,
} from '../../agent/index.ts';
import { Output, globalOptions } from '../output.ts';

function group(program: Command, name: string, description: string): Command {
  return program.commands.find((c) => c.name() === name) ?? program.command(name).description(description);
}

export function registerAgentServeCommand(program: Command): void {
  const agent = group(program, 'agent', 'the device agent');
  agent
    .command('serve')
    .description('serve in-memory inference behind the adversarial-input guard (HTTP on loopback or a unix socket)')
    .requiredOption('--config <file>', 'agent.yaml (see the README, "Inference service")')
    .option('--check', 'load the config, the models and the guard, then exit without listening')
    .action(async (opts: { config: string; check?: boolean }, cmd: Command) => {
      const g = globalOptions(cmd);
      const out = new Output(g);
      const config = await loadAgentConfig(opts.config);
      if (opts.check) {
        const rt = await loadAgentRuntime(config);
        const models = {
          primary: rt.primary.metadata.name,
          ensemble: rt.ensemble?.metadata.name ?? null,
          fallback: rt.fallback?.metadata.name ?? null,
        };
        await rt.release();
        out.result({ ok: true, models, key: rt.key }, [
          `config OK: primary ${models.primary}, ensemble ${models.ensemble ?? '-'}, fallback ${models.fallback ?? '-'}; key: ${rt.key.label}`,
        ]);
        return;
      }
      // Logs go to stderr (JSON lines, pino); request and response bodies are never logged.
      const logger = pino(
        { level: g.debug ? 'debug' : config.log.level, base: { service: 'edgeguard-agent' } },
        pino.destination(2),
      );
      let running;
      try {
        running = await startAgent(config, { logger });
      } catch (e) {
        if (!canReportOnly(config, e)) throw e;
        // The TPM refuses the model key in this boot state: no inference, but keep reporting it.
        await serveReportingOnly(config, e, logger, out);
        return;
      }
      logger.info(
        {
          url: running.url,
          key: running.runtime.key.label,
          review: running.review ? running.review.keyId : null,
          device: running.identity
            ? {
                id: running.identity.deviceId,
                serial: running.identity.serial,
                notAfter: running.identity.certificate.notAfter.toISOString(),
                renewal: Boolean(running.renewer),
              }
            : null,
          journal: running.journal ? running.journal.journal.path : null,
        },
        'inference service listening',
      );
      out.info(
        `edgeguard agent serving on ${running.url} (POST /v1/infer, /healthz, /metrics, /openapi.json); Ctrl-C to stop`,
      );
      await new Promise<void>((resolve) => {
        const stop = (signal: string) => {
          logger.info({ signal }, 'shutting down: finishing requests in flight');
          running.close(signal).then(resolve, (e) => {
            logger.error({ err: e }, 'shutdown failed');
            resolve();
          });
        };
        process.once('SIGINT', () => stop('SIGINT'));
        process.once('SIGTERM', () => stop('SIGTERM'));
      });
      out.result({ ok: true, stopped: true }, 'stopped');
    });
}

/** Until a signal: renewal, journal and attestation reports only; then exit with the refusal's status. */
async function serveReportingOnly(
  config: AgentConfig,
  refusal: Parameters<typeof startReportingAgent>[1],
  logger: pino.Logger,
  out: Output,
): Promise<void> {
  const running = await startReportingAgent(config, refusal, { logger });
  logger.error(
    { code: refusal.code, url: running.url },
    'model key refused by the TPM: no inference; renewing and reporting attestation only',
  );
  out.info(
    `edgeguard agent serving on ${running.url} with NO inference (${refusal.code}: ${refusal.message}); still renewing its certificate and pushing attestation evidence so the control plane sees this boot. Authorize the new PCR values (edgeguard attest authorize-pcrs) or restore the boot; Ctrl-C to stop`,
  );
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => void running.close(signal).finally(resolve);
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
  throw refusal;
}
