/**
 * What every route and plugin of the control plane receives: the store, the fleet CA, the EK trust
 * store, the server's policy, its metrics and the authentication pre-handlers.
 */
import type { FastifyBaseLogger, preHandlerAsyncHookHandler } from 'fastify';
import type { Registry } from 'prom-client';
import type { Store } from '../store/index.ts';
import type { FleetCa } from '../pki/index.ts';
import type { EkTrustStore } from '../attest/index.ts';
import type { AuditEvents } from './events.ts';
import type { ServerMetrics } from './metrics.ts';

export interface ServerPolicy {
  /** Whether devices with the software key provider may enroll (they stay labelled software-bound). */
  allowSoftwareDevices: boolean;
  /** Where the auto-approve list of EK public key hashes lives (re-read at each enrollment). */
  autoApproveFile: string | undefined;
  /** Lifetime of a credential challenge and of an enrollment nonce. */
  challengeTtlSeconds: number;
  /** Lifetime of device certificates. */
  deviceCertDays: number;
  /** Enrollment rate limit per client address. */
  enrollRateLimit: { max: number; timeWindowMs: number };
}

export const DEFAULT_POLICY: ServerPolicy = {
  allowSoftwareDevices: false,
  autoApproveFile: undefined,
  challengeTtlSeconds: 120,
  deviceCertDays: 30,
  enrollRateLimit: { max: 30, timeWindowMs: 60_000 },
};

export interface ControlPlaneContext {
  store: Store;
  ca: FleetCa;
  ekTrust: EkTrustStore;
  policy: ServerPolicy;
  metrics: ServerMetrics;
  registry: Registry;
  log: FastifyBaseLogger;
  /** Security events into the audit log (events.ts): emit what happened, where it happens. */
  events: AuditEvents;
  /** preHandlers: a fleet device certificate (approved, not revoked). */
  requireDevice: preHandlerAsyncHookHandler;
  /** preHandlers: an admin certificate (not revoked). */
  requireAdmin: preHandlerAsyncHookHandler;
  /** preHandlers: either of the above; the route decides what each may see. */
  requireDeviceOrAdmin: preHandlerAsyncHookHandler;
  /** Invalidate the cached CRL (after a revocation). */
  crlChanged(): void;
}
