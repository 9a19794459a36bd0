/**
 * Timers of one server process, stopped before it closes: expired enrollment nonces and credential
 * challenges are deleted (single-use rows would otherwise grow with every enrollment attempt), and
 * failed anonymous enrollments are summarised into the audit log (ctx.enrollFailures, enroll-failures.ts).
 */
import type { FastifyInstance } from 'fastify';
import type { ControlPlaneContext } from './context.ts';

export function startHousekeeping(app: FastifyInstance, ctx: ControlPlaneContext): void {
  const failures = ctx.enrollFailures;
  failures.start(ctx.policy.enrollFailureSummaryMs);
  const prune = setInterval(() => {
    ctx.store.pruneChallenges().catch((e: unknown) => ctx.log.warn({ err: e }, 'pruning enrollment challenges failed'));
  }, ctx.policy.challengePruneIntervalMs);
  prune.unref();
  // preClose: the audit log (a plugin) is still open, so the last summary reaches it.
  app.addHook('preClose', async () => {
    clearInterval(prune);
    await failures.stop();
  });
}
