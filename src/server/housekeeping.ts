/**
 * Timers of one server process, stopped before it closes: expired enrollment nonces and credential
 * challenges are deleted (single-use rows would otherwise grow with every enrollment attempt), and
 * renewed-away device certificates are revoked after their overlap, and
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
  const sweep = setInterval(() => {
    revokeSuperseded(ctx).catch((e: unknown) => ctx.log.warn({ err: e }, 'revoking superseded certificates failed'));
  }, ctx.policy.renewal.sweepIntervalMs);
  sweep.unref();
  // preClose: the audit log (a plugin) is still open, so the last summary reaches it.
  app.addHook('preClose', async () => {
    clearInterval(prune);
    clearInterval(sweep);
    await failures.stop();
  });
}

/** A renewed-away certificate stays valid for the overlap (busy connections finish), then it is revoked. */
async function revokeSuperseded(ctx: ControlPlaneContext): Promise<void> {
  const cutoff = new Date(Date.now() - ctx.policy.renewal.overlapMs).toISOString();
  let revoked = 0;
  for (const serial of await ctx.store.supersededCertificates(cutoff))
    if (await ctx.store.revokeCertificate(serial, 'superseded')) revoked += 1;
  if (revoked > 0) ctx.crlChanged();
}
