/**
 * The running agent's device identity and the renewal of its certificate.
 *
 *   - AgentIdentity: the mTLS credential of `upload` (an enrolled device directory, or PEM files),
 *     and every FleetClient the agent made with it. A renewed certificate is written to disk
 *     (atomically) and handed to those clients, which present it from their next request on:
 *     no restart.
 *   - CertificateRenewer: checks on start, then sleeps until the renewal point (two thirds of the
 *     certificate's lifetime, moved earlier by a per-certificate jitter of up to 1/30 of the
 *     lifetime so a fleet does not renew in lockstep). One sleep never exceeds `maxSleepMs`: each
 *     wake-up re-reads the wall clock, so a suspended machine or a clock change is caught. A
 *     failed renewal is retried with exponential backoff (with jitter) up to `backoffMaxMs`; a
 *     failure never stops the agent. A renewed certificate is tried on a device-only endpoint
 *     before it is stored and used.
 */
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { EdgeguardError, FILE_CAPS, readBoundedText } from '../errors/index.ts';
import { x509 } from '../pki/index.ts';
import {
  FleetClient,
  backoffDelay,
  FLEET_FILES,
  FLEET_SUBDIR,
  loadDeviceCredential,
  requestRenewal,
  writeAtomic,
  type EgressDialer,
} from '../fleet/index.ts';
import type { AgentConfig } from './config.ts';

function leafOf(chainPem: string): x509.X509Certificate {
  const first = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/.exec(chainPem)?.[0];
  if (!first) throw new EdgeguardError('EG_PKI', 'the device certificate file holds no PEM certificate.');
  return new x509.X509Certificate(first);
}

function deviceIdOf(cert: x509.X509Certificate): string {
  const cn = cert.subjectName.getField('CN')[0];
  if (!cn || !/^dev-[0-9a-f]{16}$/.test(cn))
    throw new EdgeguardError(
      'EG_PKI',
      `the certificate's subject (${cert.subject}) is not a fleet device certificate.`,
    );
  return cn;
}

export class AgentIdentity {
  private readonly clients = new Set<FleetClient>();
  private cert: { pem: string; leaf: x509.X509Certificate };
  /** The egress allowlist every client of this identity connects through (agent.yaml `egress:`). */
  dialer: EgressDialer | undefined;

  private constructor(
    readonly server: string,
    readonly caPem: string,
    /** In memory only (unwrapped by the key store for an enrolled device directory). */
    readonly keyPem: string,
    certPem: string,
    readonly deviceId: string,
    /** Where a renewed certificate chain is written. */
    readonly certPath: string,
  ) {
    this.cert = { pem: certPem, leaf: leafOf(certPem) };
  }

  static async fromConfig(upload: NonNullable<AgentConfig['upload']>): Promise<AgentIdentity> {
    if ('device' in upload) {
      const cred = await loadDeviceCredential(upload.device);
      return new AgentIdentity(
        cred.server,
        cred.caPem,
        cred.keyPem,
        cred.certPem,
        cred.deviceId,
        join(resolve(upload.device), FLEET_SUBDIR, FLEET_FILES.certificate),
      );
    }
    const read = async (p: string, what: string) => {
      return await readBoundedText(p, FILE_CAPS.certificate, `read ${what}`);
    };
    const certPem = await read(upload.cert, 'the device certificate');
    return new AgentIdentity(
      upload.server,
      await read(upload.ca, 'the fleet CA'),
      await read(upload.key, 'the device key'),
      certPem,
      deviceIdOf(leafOf(certPem)),
      upload.cert,
    );
  }

  get certPem(): string {
    return this.cert.pem;
  }

  get certificate(): x509.X509Certificate {
    return this.cert.leaf;
  }

  get serial(): string {
    return this.cert.leaf.serialNumber.toLowerCase();
  }

  /** An mTLS client that follows renewals; closed with the identity. */
  client(timeoutMs = 15_000): FleetClient {
    const c = new FleetClient({
      server: this.server,
      ca: this.caPem,
      cert: this.cert.pem,
      key: this.keyPem,
      timeoutMs,
      dialer: this.dialer,
    });
    this.clients.add(c);
    return c;
  }

  /** Store a renewed chain (atomically) and present it on every client from now on. */
  async replaceCertificate(chainPem: string): Promise<void> {
    const leaf = leafOf(chainPem);
    await writeAtomic(this.certPath, chainPem);
    this.cert = { pem: chainPem, leaf };
    for (const c of this.clients) c.setCredential(chainPem, this.keyPem);
  }

  close(): void {
    for (const c of this.clients) c.close();
    this.clients.clear();
  }
}

const DAY_MS = 86_400_000;

/**
 * When to renew a certificate: two thirds into its lifetime, moved earlier by `jitter` (0..1) times
 * a spread of 1/30 of the lifetime (at most one day).
 */
export function renewalTime(notBefore: Date, notAfter: Date, jitter: number): number {
  const life = notAfter.getTime() - notBefore.getTime();
  const spread = Math.min(life / 30, DAY_MS);
  return notBefore.getTime() + (life * 2) / 3 - Math.min(1, Math.max(0, jitter)) * spread;
}

export type RenewalResult = 'renewed' | 'not-due' | 'failed';

export interface RenewalStatus {
  deviceId: string;
  serial: string;
  notBefore: string;
  notAfter: string;
  renewAt: string;
  expired: boolean;
  nextCheckAt: string | null;
  consecutiveFailures: number;
  last: { result: 'renewed' | 'failed'; at: string; error?: string; code?: string } | null;
}

export interface RenewerOptions {
  identity: AgentIdentity;
  maxSleepMs: number;
  backoffInitialMs: number;
  backoffMaxMs: number;
  /** Wall clock (ms); injectable so tests can move time. */
  now?: () => number;
  random?: () => number;
  log?: Logger;
  events?: {
    renewed?(previousSerial: string, certificate: x509.X509Certificate): void;
    failed?(error: EdgeguardError, consecutiveFailures: number): void;
  };
}

export class CertificateRenewer {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<RenewalResult> | undefined;
  private jitter: number;
  private failures = 0;
  private nextCheckAt: number | null = null;
  private last: RenewalStatus['last'] = null;
  private closed = false;
  private readonly now: () => number;
  private readonly random: () => number;

  constructor(private readonly o: RenewerOptions) {
    this.now = o.now ?? Date.now;
    this.random = o.random ?? Math.random;
    this.jitter = this.random();
  }

  get renewAt(): number {
    const c = this.o.identity.certificate;
    return renewalTime(c.notBefore, c.notAfter, this.jitter);
  }

  /** Check now (on start), then on the timer. */
  start(): void {
    void this.check();
  }

  /** Renew if due (or `force`); schedules the next check either way. Never throws. */
  check(force = false): Promise<RenewalResult> {
    this.running ??= this.doCheck(force).finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private schedule(delayMs: number): void {
    if (this.closed) return;
    if (this.timer) clearTimeout(this.timer);
    const delay = Math.max(0, Math.min(delayMs, this.o.maxSleepMs));
    this.nextCheckAt = this.now() + delay;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.check();
    }, delay);
    this.timer.unref();
  }

  private async doCheck(force: boolean): Promise<RenewalResult> {
    const identity = this.o.identity;
    const now = this.now();
    if (!force && now < this.renewAt) {
      this.schedule(this.renewAt - now);
      return 'not-due';
    }
    const previous = identity.serial;
    const client = new FleetClient({
      server: identity.server,
      ca: identity.caPem,
      cert: identity.certPem,
      key: identity.keyPem,
      timeoutMs: 15_000,
      dialer: identity.dialer,
    });
    try {
      const renewed = await requestRenewal(client, identity);
      // Try the new certificate on a device-only endpoint before storing and using it.
      const probe = new FleetClient({
        server: identity.server,
        ca: identity.caPem,
        cert: renewed.chainPem,
        key: identity.keyPem,
        timeoutMs: 15_000,
        dialer: identity.dialer,
      });
      try {
        await probe.call('GET', '/v1/device/self');
      } finally {
        probe.close();
      }
      await identity.replaceCertificate(renewed.chainPem);
      this.failures = 0;
      this.jitter = this.random();
      this.last = { result: 'renewed', at: new Date(this.now()).toISOString() };
      this.o.log?.info(
        {
          deviceId: identity.deviceId,
          previousSerial: previous,
          serial: identity.serial,
          notAfter: renewed.certificate.notAfter.toISOString(),
          renewAt: new Date(this.renewAt).toISOString(),
        },
        'device certificate renewed',
      );
      this.o.events?.renewed?.(previous, renewed.certificate);
      // A certificate due at once (a control plane issuing very short lifetimes) must not make a
      // renewal loop: the next check waits at least backoffInitialMs.
      const wait = this.renewAt - this.now();
      if (wait < this.o.backoffInitialMs)
        this.o.log?.warn(
          {
            notBefore: renewed.certificate.notBefore.toISOString(),
            notAfter: renewed.certificate.notAfter.toISOString(),
          },
          'the renewed certificate is already due for renewal (very short lifetime or a wrong clock)',
        );
      this.schedule(Math.max(wait, this.o.backoffInitialMs));
      return 'renewed';
    } catch (e) {
      const err =
        e instanceof EdgeguardError
          ? e
          : new EdgeguardError('EG_SERVER', `certificate renewal failed (${(e as Error).message}).`, { cause: e });
      this.failures += 1;
      this.last = { result: 'failed', at: new Date(this.now()).toISOString(), error: err.message, code: err.code };
      const delay = backoffDelay(this.failures, this.o.backoffInitialMs, this.o.backoffMaxMs, this.random());
      const expired = this.now() >= identity.certificate.notAfter.getTime();
      const fields = {
        deviceId: identity.deviceId,
        code: err.code,
        consecutiveFailures: this.failures,
        retryInMs: delay,
        notAfter: identity.certificate.notAfter.toISOString(),
      };
      if (expired)
        this.o.log?.error(
          fields,
          `device certificate has EXPIRED and renewal failed (${err.message}); the control plane refuses an expired certificate: re-enroll the device`,
        );
      else this.o.log?.warn(fields, `device certificate renewal failed; retrying with backoff: ${err.message}`);
      this.o.events?.failed?.(err, this.failures);
      this.schedule(delay);
      return 'failed';
    } finally {
      // Each check uses a fresh client, with the certificate in use.
      client.close();
    }
  }

  status(): RenewalStatus {
    const c = this.o.identity.certificate;
    return {
      deviceId: this.o.identity.deviceId,
      serial: this.o.identity.serial,
      notBefore: c.notBefore.toISOString(),
      notAfter: c.notAfter.toISOString(),
      renewAt: new Date(this.renewAt).toISOString(),
      expired: this.now() >= c.notAfter.getTime(),
      nextCheckAt: this.nextCheckAt === null ? null : new Date(this.nextCheckAt).toISOString(),
      consecutiveFailures: this.failures,
      last: this.last,
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => undefined);
  }
}
