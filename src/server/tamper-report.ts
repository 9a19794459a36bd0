/**
 * A device that reports physical tampering (tamper.detected or device.locked in its signed journal)
 * is marked `tampered` and every certificate it holds is revoked at once: its keys may have been
 * read by whoever opened the case, so nothing it presents is trusted until it is re-provisioned
 * and enrolled again (docs/threat-model.md, "Physical tamper").
 */
import type { FastifyBaseLogger } from 'fastify';
import type { AuditEvent } from '../audit/index.ts';
import type { ControlPlaneContext } from './context.ts';

const TAMPER_EVENTS: ReadonlySet<AuditEvent['type']> = new Set(['tamper.detected', 'device.locked']);

export function reportsTamper(events: readonly AuditEvent[]): AuditEvent | undefined {
  return events.find((e) => TAMPER_EVENTS.has(e.type));
}

/** Mark the device tampered and revoke its certificates when its journal reported tampering. */
export async function applyTamperReport(
  ctx: ControlPlaneContext,
  deviceId: string,
  events: readonly AuditEvent[],
  log: FastifyBaseLogger,
): Promise<void> {
  const report = reportsTamper(events);
  if (!report) return;
  const r = await ctx.store.markDeviceTampered(deviceId);
  if (!r) return; // already tampered or revoked
  ctx.crlChanged();
  log.warn({ deviceId, event: report.type, serials: r.revokedSerials }, 'device reported tampering; revoked');
  await ctx.events.emit('device.revoked', {
    actor: { kind: 'device', id: deviceId },
    subject: deviceId,
    outcome: 'success',
    details: { deviceId, reason: `tamper report (${report.type})`, revokedSerials: r.revokedSerials.slice(0, 1000) },
  });
}
