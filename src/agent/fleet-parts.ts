/**
 * The agent's fleet-facing parts, built the same way for `agent serve` (serve.ts) and for the
 * report-only agent (report-only.ts): the audit journal, the certificate renewer and the
 * attestation reporter over the device identity of `upload`, the review queue (serve.ts only),
 * and the certificate, journal, lease and attestation fields of /healthz. Each part reports to the
 * agent's metrics and records to the journal; which parts are opened, in which order, and their
 * closing are the caller's.
 */
import { createPrivateKey, createPublicKey } from 'node:crypto';
import type { Logger } from 'pino';
import { FILE_CAPS, readBoundedText } from '../errors/index.ts';
import { parseSealPublicKeyPem } from '../crypto/index.ts';
import type { AgentConfig } from './config.ts';
import { AgentIdentity, CertificateRenewer } from './renewal.ts';
import { agentEgressDialer } from './egress.ts';
import { AgentJournal } from './agent-journal.ts';
import { ReviewQueue, fleetReviewSink, type ReviewSink } from './review.ts';
import type { DeviceLease } from './lease.ts';
import { agentAttestationReporter, type AttestationReporter } from './attestation.ts';
import type { AgentMetrics } from './serve-http.ts';

export interface StartAgentOptions {
  logger?: Logger;
  /** Override the review sink (tests); by default the control plane from `upload`, if configured. */
  reviewSink?: ReviewSink;
  /** Wall clock of the certificate renewal schedule (tests, the demo); default Date.now. */
  renewalClock?: () => number;
}

/** The parts of an agent that face the fleet, each there only when configured. */
export interface FleetParts {
  identity?: AgentIdentity | undefined;
  journal?: AgentJournal | undefined;
  renewer?: CertificateRenewer | undefined;
  lease?: DeviceLease | undefined;
  reporter?: AttestationReporter | undefined;
}

/** The attestation reporter of `attestation:`; a failed verdict ends the lease. */
export function startReporter(
  config: AgentConfig,
  parts: Pick<FleetParts, 'identity' | 'lease'>,
  log: Logger | undefined,
): Promise<AttestationReporter> {
  const upload = config.upload;
  const deviceDir = config.attestation.device ?? (upload && 'device' in upload ? upload.device : '');
  const reporterOptions = {
    deviceDir,
    eventLogPath: config.attestation.eventLog,
    intervalMs: config.attestation.intervalMs,
    log,
  };
  return agentAttestationReporter(reporterOptions, parts.identity!, (v) => parts.lease?.onVerdict(v));
}

/** What start-up opened, closed in reverse order when a later step fails or the agent stops. */
export class Opened {
  private readonly closers: Array<() => Promise<void> | void> = [];
  push(close: () => Promise<void> | void): void {
    this.closers.push(close);
  }
  async closeAll(): Promise<void> {
    for (const f of this.closers.reverse()) await Promise.resolve(f()).catch(() => undefined);
  }
}

/**
 * The device identity from agent.yaml's upload block (none without one), its clients dialing through the agent's egress
 * allowlist, and the journal after it (each pushed to `opened`). A refused connection is logged and
 * journaled: the journal opens after the identity, whose clients already need the dialer, so the
 * dialer's report is bound late.
 */
export async function openIdentityAndJournal(
  config: AgentConfig,
  metrics: AgentMetrics,
  log: Logger | undefined,
  opened: Opened,
): Promise<{ identity?: AgentIdentity; journal?: AgentJournal }> {
  if (!config.upload) return {};
  const identity = await AgentIdentity.fromConfig(config.upload);
  opened.push(() => identity.close());
  let journal: AgentJournal | undefined;
  identity.dialer = await agentEgressDialer(config, identity.server, (denial) => {
    log?.error(denial, 'egress refused by the agent allowlist');
    journal?.record('egress.denied', 'failure', denial);
  });
  metrics.certNotAfter.set(Math.floor(identity.certificate.notAfter.getTime() / 1000));
  if (config.journal.enabled !== false) {
    const j = await openJournal(config, identity, metrics, log);
    journal = j;
    opened.push(() => j.close(0));
  }
  return { identity, ...(journal ? { journal } : {}) };
}

export async function openJournal(
  config: AgentConfig,
  identity: AgentIdentity,
  metrics: AgentMetrics,
  log: Logger | undefined,
): Promise<AgentJournal> {
  const privateKey = createPrivateKey(identity.keyPem);
  const j = config.journal;
  const journal = await AgentJournal.open({
    path: j.path!,
    privateKey,
    publicKey: createPublicKey(privateKey),
    deviceId: identity.deviceId,
    transport: identity.client(),
    intervalMs: j.forwardIntervalMs,
    backoffMaxMs: j.backoffMaxMs,
    batch: j.batch,
    maxPending: j.maxPending,
    ...(log ? { log } : {}),
    events: {
      appended: (n, seq) => {
        metrics.journalEntries.inc(n);
        metrics.journalHeadSeq.set(seq);
      },
      dropped: (n) => metrics.journalDropped.inc(n),
      forwarded: (r) => metrics.journalForwardedSeq.set(r.serverSeq),
      forwardFailed: () => metrics.journalForwardFailures.inc(),
    },
  });
  metrics.journalHeadSeq.set(journal.journal.lastSeq);
  return journal;
}

export async function openReviewQueue(
  config: AgentConfig,
  o: StartAgentOptions,
  metrics: AgentMetrics,
  identity: AgentIdentity | undefined,
  journal: AgentJournal | undefined,
): Promise<ReviewQueue> {
  const pem = await readBoundedText(config.review.publicKey!, FILE_CAPS.key, 'read the review public key');
  const reviewEvent = (itemId: string, action: 'queued' | 'uploaded' | 'dropped', reason?: string) =>
    journal?.record('review.item', action === 'dropped' ? 'failure' : 'success', {
      itemId,
      action,
      ...(reason ? { reason } : {}),
    });
  return ReviewQueue.open({
    publicKey: parseSealPublicKeyPem(pem, config.review.publicKey),
    dir: config.review.spool.dir,
    maxItems: config.review.spool.maxItems,
    maxBytes: config.review.spool.maxBytes,
    sink: o.reviewSink ?? (identity ? fleetReviewSink(identity.client()) : undefined),
    intervalMs: config.upload?.intervalMs,
    log: o.logger,
    events: {
      dropped: (e, reason) => {
        metrics.reviewDropped.inc({ reason });
        reviewEvent(e.id, 'dropped', `spool ${reason}`);
      },
      changed: (items, bytes) => {
        metrics.spoolItems.set(items);
        metrics.spoolBytes.set(bytes);
      },
      sealed: (id) => reviewEvent(id, 'queued'),
      uploaded: (id) => {
        metrics.reviewUploaded.inc();
        reviewEvent(id, 'uploaded');
      },
      uploadFailed: () => metrics.reviewUploadFailures.inc(),
    },
  });
}

export function startRenewer(
  config: AgentConfig,
  o: StartAgentOptions,
  metrics: AgentMetrics,
  { identity, journal }: Pick<FleetParts, 'identity' | 'journal'>,
): CertificateRenewer | undefined {
  if (!identity || !config.renewal.enabled) return undefined;
  const r = config.renewal;
  const attempted = (result: 'renewed' | 'failed') => {
    metrics.certRenewals.inc({ result });
    metrics.certRenewalLastSuccess.set(result === 'renewed' ? 1 : 0);
    metrics.certRenewalLastTime.set(Math.floor(Date.now() / 1000));
  };
  return new CertificateRenewer({
    identity,
    maxSleepMs: r.maxSleepMs,
    backoffInitialMs: r.backoffInitialMs,
    backoffMaxMs: Math.max(r.backoffInitialMs, r.backoffMaxMs),
    ...(o.renewalClock ? { now: o.renewalClock } : {}),
    ...(o.logger ? { log: o.logger } : {}),
    events: {
      renewed: (previousSerial, cert) => {
        attempted('renewed');
        metrics.certNotAfter.set(Math.floor(cert.notAfter.getTime() / 1000));
        journal?.record(
          'cert.renewed',
          'success',
          { previousSerial, serial: identity.serial, notAfter: cert.notAfter.toISOString() },
          identity.serial,
        );
      },
      failed: (err) => {
        attempted('failed');
        journal?.record(
          'cert.renewed',
          'failure',
          { previousSerial: identity.serial, reason: `${err.code}: ${err.message}`.slice(0, 2000) },
          identity.serial,
        );
      },
    },
  });
}

/** The certificate, journal, lease and attestation fields of /healthz. */
export function healthOf({
  identity,
  renewer,
  journal,
  lease,
  reporter,
}: Pick<FleetParts, 'identity' | 'renewer' | 'journal' | 'lease' | 'reporter'>): Record<string, unknown> {
  return {
    ...(reporter ? { attestation: reporter.report } : {}),
    ...(lease
      ? { lease: { holds: lease.holds(), until: lease.until, ...(lease.lost ? { lost: lease.lost } : {}) } }
      : {}),
    ...(identity
      ? {
          certificate: renewer
            ? renewer.status()
            : {
                deviceId: identity.deviceId,
                serial: identity.serial,
                notAfter: identity.certificate.notAfter.toISOString(),
                renewal: 'disabled',
              },
        }
      : {}),
    ...(journal ? { journal: journal.status() } : {}),
  };
}
