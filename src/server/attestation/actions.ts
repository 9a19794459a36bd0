/**
 * What a failed attestation sets off, as the operator configured it: a webhook (a JSON POST, so an
 * alerting system hears of it) and/or revoking the device and its certificates (the device's next
 * request is refused, and the agent's lease then stops it serving). Silence fires only the
 * webhook: revoking every device that loses its network would turn an outage into a re-enrollment.
 */
import type { FastifyBaseLogger } from 'fastify';
import type { ControlPlaneContext } from '../context.ts';

export interface FailureActionOptions {
  /** POSTed `{ type, deviceId, reasons, time }` on each failed verdict and each silent device. */
  webhookUrl?: string;
  /** Revoke the device (all its certificates) on a failed verdict. */
  revokeCertificate?: boolean;
}

export type FailureKind = 'verdict' | 'silence';

const WEBHOOK_TIMEOUT_MS = 5000;

export class FailureActions {
  constructor(
    private readonly options: FailureActionOptions,
    private readonly ctx: Pick<ControlPlaneContext, 'store' | 'events' | 'crlChanged'>,
    private readonly log: FastifyBaseLogger,
  ) {}

  async fire(deviceId: string, kind: FailureKind, reasons: Array<{ code: string; detail: string }>): Promise<void> {
    if (this.options.webhookUrl) void this.notify(this.options.webhookUrl, deviceId, kind, reasons);
    if (kind === 'verdict' && this.options.revokeCertificate) await this.revoke(deviceId, reasons);
  }

  /** Not awaited by the request: a slow receiver must not hold up the device's answer. */
  private async notify(url: string, deviceId: string, kind: FailureKind, reasons: unknown[]): Promise<void> {
    const type = kind === 'verdict' ? 'attestation.failed' : 'attestation.silent';
    try {
      const r = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ type, deviceId, reasons, time: new Date().toISOString() }),
        signal: AbortSignal.timeout(WEBHOOK_TIMEOUT_MS),
      });
      if (!r.ok) this.log.error({ deviceId, status: r.status }, `attestation webhook answered HTTP ${r.status}`);
    } catch (err) {
      this.log.error({ err, deviceId }, 'attestation webhook could not be delivered');
    }
  }

  private async revoke(deviceId: string, reasons: Array<{ code: string }>): Promise<void> {
    const r = await this.ctx.store.revokeDevice(deviceId, 'keyCompromise');
    if (!r) return; // already revoked
    this.ctx.crlChanged();
    this.log.warn({ deviceId, serials: r.revokedSerials }, 'device revoked after a failed attestation');
    await this.ctx.events.emit('device.revoked', {
      actor: { kind: 'server', id: 'attestation' },
      subject: deviceId,
      outcome: 'success',
      details: {
        deviceId,
        reason: `attestation failed: ${reasons.map((x) => x.code).join(', ')}`.slice(0, 2000),
        revokedSerials: r.revokedSerials.slice(0, 1000),
      },
    });
  }
}
