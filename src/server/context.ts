/**
 * What every route and plugin of the control plane receives: the store, the fleet CA, the EK trust
 * store, the server's policy, its metrics and the certificate checks.
 */
import type { FastifyBaseLogger, FastifyReply, FastifyRequest } from 'fastify';
import type { Registry } from 'prom-client';
import type { Store } from '../store/index.ts';
import type { FleetCa } from '../pki/index.ts';
import type { EkTrustStore } from '../attest/index.ts';
import type { AuditEvents } from './events.ts';
import type { EnrollmentFailures } from './enroll-failures.ts';
import type { ServerMetrics } from './metrics.ts';

export interface ServerPolicy {
  /** Whether devices with the software key provider may enroll (they stay labelled software-bound). */
  allowSoftwareDevices: boolean;
  /** Where the auto-approve list of EK public key hashes lives (re-read at each enrollment). */
  autoApproveFile: string | undefined;
  /** Lifetime of a credential challenge and of an enrollment nonce. */
  challengeTtlSeconds: number;
  /** How often expired nonces and challenges are deleted. */
  challengePruneIntervalMs: number;
  /** At most one `enroll.failures` summary event per this interval. */
  enrollFailureSummaryMs: number;
  /** Lifetime of device certificates. */
  deviceCertDays: number;
  /** Enrollment rate limit per client address. */
  enrollRateLimit: { max: number; timeWindowMs: number };
  /** Device certificate renewal: how often, and how long a renewed-away certificate stays valid. */
  renewal: RenewalPolicy;
  /** What one client can hold of the server: time per request, connections, bytes before a certificate. */
  limits: ServerLimits;
}

export interface RenewalPolicy {
  /** Certificates one device may be issued per window (enrollment included); more renewals get 429. */
  maxPerWindow: number;
  windowMs: number;
  /** The previous certificate is revoked (reason superseded) this long after its successor was issued. */
  overlapMs: number;
  /** How often superseded certificates are looked for. */
  sweepIntervalMs: number;
}

export interface ServerLimits {
  /** A whole request, headers and body, must arrive within this (slow bodies). */
  requestTimeoutMs: number;
  /** The request headers must arrive within this (slow headers). */
  headersTimeoutMs: number;
  /** An idle kept-alive connection is closed after this. */
  keepAliveTimeoutMs: number;
  /** A connection with no traffic at all is closed after this (connections that never send a request). */
  connectionTimeoutMs: number;
  /**
   * Open connections one remote address may hold, waiting ones included; more are closed unread
   * after `overCapCloseDelayMs` (at most `overCapHeldMax` held so at a time; beyond, at once).
   */
  connectionsPerAddress: number;
  overCapCloseDelayMs: number;
  overCapHeldMax: number;
  /**
   * New connections one remote address may open per second on average (each costs a TLS
   * handshake), after a burst of `connectionBurstPerAddress`; more wait, accepted but unread,
   * before the handshake, and are served in turn.
   */
  connectionRatePerAddress: number;
  connectionBurstPerAddress: number;
  /** How long a connection may wait for its address's rate; then it is closed. */
  connectionWaitMs: number;
  /** Body limit of the routes reachable without a certificate (enrollment). */
  anonymousBodyBytes: number;
}

export const DEFAULT_POLICY: ServerPolicy = {
  allowSoftwareDevices: false,
  autoApproveFile: undefined,
  challengeTtlSeconds: 120,
  challengePruneIntervalMs: 10 * 60_000,
  enrollFailureSummaryMs: 60_000,
  deviceCertDays: 30,
  enrollRateLimit: { max: 30, timeWindowMs: 60_000 },
  renewal: { maxPerWindow: 4, windowMs: 24 * 3600_000, overlapMs: 10 * 60_000, sweepIntervalMs: 60_000 },
  limits: {
    requestTimeoutMs: 30_000,
    headersTimeoutMs: 10_000,
    keepAliveTimeoutMs: 30_000,
    connectionTimeoutMs: 60_000,
    connectionsPerAddress: 64,
    overCapCloseDelayMs: 1_000,
    overCapHeldMax: 256,
    connectionRatePerAddress: 50,
    connectionBurstPerAddress: 200,
    connectionWaitMs: 10_000,
    anonymousBodyBytes: 32 * 1024,
  },
};

/** What callers may set: any part of the policy, any part of the limits. */
export type ServerPolicyOptions = Partial<Omit<ServerPolicy, 'limits' | 'renewal'>> & {
  limits?: Partial<ServerLimits>;
  renewal?: Partial<RenewalPolicy>;
};

export function resolvePolicy(o: ServerPolicyOptions = {}): ServerPolicy {
  return {
    ...DEFAULT_POLICY,
    ...o,
    limits: { ...DEFAULT_POLICY.limits, ...o.limits },
    renewal: { ...DEFAULT_POLICY.renewal, ...o.renewal },
  };
}

/**
 * A certificate check run as an `onRequest` hook: before the body is read or parsed, so an anonymous
 * client cannot make the server buffer and validate megabytes (it also works as a preHandler).
 */
export type CertificateCheck = (request: FastifyRequest, reply: FastifyReply) => Promise<void>;

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
  /** onRequest hooks: a fleet device certificate (approved, not revoked). */
  requireDevice: CertificateCheck;
  /** onRequest hooks: an admin certificate (not revoked). */
  requireAdmin: CertificateCheck;
  /** onRequest hooks: either of the above; the route decides what each may see. */
  requireDeviceOrAdmin: CertificateCheck;
  /** Checks /healthz runs beside the database ping; each names a problem or returns undefined. */
  healthChecks: Array<() => Promise<string | undefined>>;
  /** Failed anonymous enrollments, summarised into the audit log (enroll-failures.ts). */
  enrollFailures: EnrollmentFailures;
  /** Invalidate the cached CRL (after a revocation). */
  crlChanged(): void;
}
