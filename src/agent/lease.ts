/**
 * The device's lease on serving: the agent may answer inference only while it holds a recent
 * passing attestation verdict or a successful check-in with the control plane, each extending the
 * lease by the offline grace (default 4 hours: long enough for a network outage, short enough that
 * a stolen device goes dark the same day). The lease is lost at once when a verdict fails or the
 * control plane refuses the device's certificate (revoked), and when the grace runs out; losing
 * it calls `onLost` once (stop serving, drop sessions, wipe keys). The bound between a revocation
 * and `onLost` is one check-in interval plus one request timeout.
 */
import type { FastifyBaseLogger } from 'fastify';
import { EdgeguardError, isEdgeguardError } from '../errors/index.ts';
import type { VerdictResponse } from '../fleet/index.ts';

export interface DeviceLeaseOptions {
  /** One authenticated request to the control plane (e.g. GET /v1/device/self over mTLS). */
  checkIn: () => Promise<unknown>;
  /** Called once, when the lease is lost. */
  onLost: (reason: LeaseLoss) => Promise<void> | void;
  /** How long a check-in or passing verdict keeps the lease (default 4 h). */
  offlineGraceMs?: number;
  /** Time between check-ins (default 60 s). */
  checkInIntervalMs?: number;
  log?: Pick<FastifyBaseLogger, 'info' | 'warn' | 'error'> | undefined;
}

export interface LeaseLoss {
  reason: 'revoked' | 'attestation-failed' | 'expired';
  detail: string;
  at: string;
}

/** Longest single setTimeout Node accepts; longer waits re-arm. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class DeviceLease {
  private validUntil: number;
  private loss: LeaseLoss | undefined;
  private lossHandled: Promise<void> | undefined;
  private checkInTimer: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private readonly graceMs: number;
  private handled = false;
  private waiters: Array<(loss: LeaseLoss) => void> = [];

  /** A lease starts held for one grace period: a device that boots offline may serve that long. */
  constructor(private readonly o: DeviceLeaseOptions) {
    this.graceMs = o.offlineGraceMs ?? 4 * 3600_000;
    this.validUntil = Date.now() + this.graceMs;
  }

  /** Whether the agent may serve now. */
  holds(now = Date.now()): boolean {
    return this.loss === undefined && now < this.validUntil;
  }

  /** Why the agent must not serve now (503 EG_LOCKED), or undefined while the lease holds. */
  refusal(): EdgeguardError | undefined {
    if (this.holds()) return undefined;
    const why = this.loss ? `${this.loss.reason}: ${this.loss.detail}` : 'expired';
    return new EdgeguardError(
      'EG_LOCKED',
      `this device no longer holds its lease from the control plane (${why}); it serves nothing until an operator restores it.`,
    );
  }

  get lost(): LeaseLoss | undefined {
    return this.loss;
  }

  get until(): string {
    return new Date(this.validUntil).toISOString();
  }

  start(): void {
    this.armExpiry();
    void this.checkInNow();
  }

  stop(): void {
    clearTimeout(this.checkInTimer);
    clearTimeout(this.expiryTimer);
  }

  /** The attestation reporter's verdicts: a pass extends the lease, a failure ends it. */
  onVerdict(v: VerdictResponse): void {
    if (v.pass) this.extend();
    else void this.lose('attestation-failed', v.codes.join(', '));
  }

  /** One check-in; a refused certificate ends the lease, an unreachable server does not. */
  async checkInNow(): Promise<void> {
    clearTimeout(this.checkInTimer);
    try {
      await this.o.checkIn();
      this.extend();
    } catch (e) {
      if (isEdgeguardError(e, 'EG_UNAUTHORIZED') || isEdgeguardError(e, 'EG_FORBIDDEN'))
        await this.lose('revoked', (e as Error).message);
      else this.o.log?.warn({ err: e, leaseUntil: this.until }, 'check-in failed; serving on the offline grace');
    }
    if (this.loss === undefined) {
      this.checkInTimer = setTimeout(() => void this.checkInNow(), this.o.checkInIntervalMs ?? 60_000);
      this.checkInTimer.unref();
    }
  }

  /** Resolves with the loss once `onLost` has finished. */
  whenLost(): Promise<LeaseLoss> {
    if (this.loss && this.waiters.length === 0 && this.handled) return Promise.resolve(this.loss);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private extend(): void {
    if (this.loss) return;
    this.validUntil = Date.now() + this.graceMs;
    this.armExpiry();
  }

  private armExpiry(): void {
    clearTimeout(this.expiryTimer);
    const left = this.validUntil - Date.now();
    this.expiryTimer = setTimeout(
      () => {
        if (Date.now() >= this.validUntil)
          void this.lose(
            'expired',
            `no check-in or passing verdict since ${new Date(this.validUntil - this.graceMs).toISOString()}`,
          );
        else this.armExpiry();
      },
      Math.min(Math.max(left, 0), MAX_TIMER_MS),
    );
    this.expiryTimer.unref();
  }

  private lose(reason: LeaseLoss['reason'], detail: string): Promise<void> {
    if (this.loss) return this.lossHandled!;
    this.loss = { reason, detail, at: new Date().toISOString() };
    this.stop();
    this.o.log?.error({ reason, detail }, 'lease lost: the agent stops serving and wipes its keys');
    this.lossHandled = Promise.resolve()
      .then(() => this.o.onLost(this.loss!))
      .catch((err) => this.o.log?.error({ err }, 'stopping after the lease was lost failed'))
      .then(() => {
        this.handled = true;
        for (const w of this.waiters.splice(0)) w(this.loss!);
      });
    return this.lossHandled;
  }
}

/**
 * The lease of a running agent: check-ins are GET /v1/device/self with its identity; losing the
 * lease releases the ONNX Runtime sessions (the decrypted model) and closes the identity's
 * connections, while the refusal already answers every new request with 503.
 */
export function agentLease(
  o: Pick<DeviceLeaseOptions, 'offlineGraceMs' | 'checkInIntervalMs' | 'log'>,
  identity: { client(): { call(method: string, path: string): Promise<unknown>; close(): void }; close(): void },
  release: () => Promise<void>,
): DeviceLease {
  const client = identity.client();
  return new DeviceLease({
    ...o,
    checkIn: () => client.call('GET', '/v1/device/self'),
    onLost: async () => {
      client.close();
      identity.close();
      await release();
    },
  });
}
