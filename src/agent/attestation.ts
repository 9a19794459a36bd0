/**
 * The device's side of remote attestation (push model, so it works from behind NAT): ask the
 * control plane for a nonce, have the TPM quote the PCRs the device's policy names with the
 * enrolled AK over that nonce (every bank the policy lists), read the measured-boot event log, and
 * push both; on a schedule (default every 60 s, jittered so a fleet does not report in lockstep)
 * and on demand. A failed push backs off like the other fleet clients and never stops the service.
 *
 * Each push asks for the next round's nonce in its verdict, so a device in steady state makes one
 * request per round: the next round uses that nonce while it is still usable by the device's own
 * clock (its lifetime less a margin for the quote and the trip), is scheduled no later than that,
 * and asks /nonce only when it holds none (the first round, after a failure, after a pause).
 */
import type { FastifyBaseLogger } from 'fastify';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { EdgeguardError, fsError, isEdgeguardError } from '../errors/index.ts';
import { readDeviceFile } from '../keystore/index.ts';
import { readEventLogBytes } from '../eventlog/index.ts';
import { performance } from 'node:perf_hooks';
import {
  MAX_EVIDENCE_LOG_BYTES,
  backoffDelay,
  pushAttestationEvidence,
  requestAttestationNonce,
  type Evidence,
  type FleetClient,
  type VerdictResponse,
} from '../fleet/index.ts';
import { TpmClient, type TpmKeyBlobs } from '../tpm/index.ts';

export const DEFAULT_EVENT_LOG_PATH = '/sys/kernel/security/tpm0/binary_bios_measurements';

export interface AttestationReporterOptions {
  /** The mTLS client of the device identity. */
  client: FleetClient;
  tpm: Pick<TpmClient, 'attestation'>;
  /** The AK the device enrolled with (DIR/ak.tpm.pub, DIR/ak.tpm.priv). */
  ak: TpmKeyBlobs;
  /** Where the firmware's event log is read (default DEFAULT_EVENT_LOG_PATH). */
  eventLogPath?: string;
  /** Mean time between pushes (default 60 s); each wait is drawn from 75 %..125 % of it. */
  intervalMs?: number;
  /** Upper bound of the backoff after failed pushes (default 10 min). */
  backoffMaxMs?: number;
  log: Pick<FastifyBaseLogger, 'info' | 'warn' | 'error'>;
  /** Told of every verdict (the lease listens here). */
  onVerdict?: (v: VerdictResponse) => void;
}

export interface AttestationReport {
  lastVerdict?: VerdictResponse;
  lastPushAt?: string;
  lastError?: string;
  consecutiveFailures: number;
  /** Rounds that used the nonce the previous verdict carried (no /nonce request). */
  noncesCarried: number;
}

/** A carried nonce is used only with this much of its lifetime left (the quote, the log, the trip). */
const NEXT_NONCE_MARGIN_MS = 10_000;

/** The control plane's schema refused a member it does not know (the only 400 an older one gives `nextNonce`). */
function refusedUnknownField(e: unknown): boolean {
  return (
    isEdgeguardError(e, 'EG_BAD_REQUEST') &&
    (e.details as { status?: unknown } | undefined)?.status === 400 &&
    /additional properties/.test(e.message)
  );
}

/**
 * After a control plane refused `nextNonce` (older than the field), it is asked for again after this
 * long; the same for the binary evidence body.
 */
const NEXT_NONCE_RETRY_MS = 3_600_000;

interface HeldNonce {
  nonce: string;
  pcrs: string;
  /** performance.now() after which it is not used. */
  usableUntil: number;
}

/** The AK blobs of an enrolled device directory. */
export async function readDeviceAk(deviceDir: string): Promise<TpmKeyBlobs> {
  const read = (name: string) =>
    readFile(join(deviceDir, name)).catch((e) => {
      throw fsError(e, join(deviceDir, name), 'read the attestation key');
    });
  return { public: await read('ak.tpm.pub'), private: await read('ak.tpm.priv') };
}

export class AttestationReporter {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<VerdictResponse> | undefined;
  private stopped = true;
  /** The nonce the last verdict carried, single use: taken (and forgotten) by the next round. */
  private held: HeldNonce | undefined;
  /** performance.now() until which evidence does not ask for the next nonce (an older control plane). */
  private nextNonceUnsupportedUntil = 0;
  private binaryUnsupportedUntil = 0;
  readonly report: AttestationReport = { consecutiveFailures: 0, noncesCarried: 0 };

  constructor(private readonly o: AttestationReporterOptions) {}

  /** One round now: nonce, quote, log, push. Concurrent callers share the round in flight. */
  pushNow(): Promise<VerdictResponse> {
    this.running ??= this.round().finally(() => (this.running = undefined));
    return this.running;
  }

  start(): void {
    this.stopped = false;
    this.schedule(0);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private async round(): Promise<VerdictResponse> {
    try {
      const carried = this.takeHeldNonce();
      const issued = carried ?? (await requestAttestationNonce(this.o.client));
      if (carried) this.report.noncesCarried++;
      const eventLog = await readEventLogBytes(this.o.eventLogPath ?? DEFAULT_EVENT_LOG_PATH, MAX_EVIDENCE_LOG_BYTES);
      const q = await this.o.tpm.attestation.quote(this.o.ak, issued.pcrs, Buffer.from(issued.nonce, 'hex'));
      const verdict = await this.push(issued.nonce, { quote: q.attest, signature: q.signature, eventLog });
      const next = verdict.nextNonce;
      if (next)
        this.held = {
          nonce: next.nonce,
          pcrs: next.pcrs,
          usableUntil: performance.now() + next.ttlSeconds * 1000 - NEXT_NONCE_MARGIN_MS,
        };
      Object.assign(this.report, {
        lastVerdict: verdict,
        lastPushAt: new Date().toISOString(),
        consecutiveFailures: 0,
      });
      delete this.report.lastError;
      if (verdict.pass) this.o.log.info({ trustedUntil: verdict.trustedUntil }, 'attestation passed');
      else this.o.log.error({ reasons: verdict.reasons }, 'attestation FAILED: the control plane refused this boot');
      this.o.onVerdict?.(verdict);
      return verdict;
    } catch (e) {
      this.report.consecutiveFailures++;
      this.report.lastError = (e as Error).message;
      this.o.log.warn({ err: e }, 'attestation evidence could not be pushed');
      throw e;
    }
  }

  /**
   * Push in the binary form (no base64 for the control plane to check and decode), asking for the
   * next round's nonce, unless the control plane is known not to read them. Both refusals come
   * before the nonce is looked at, so the same evidence is pushed again over the same nonce:
   * a control plane older than the binary body answers 415 (the JSON form is used for
   * NEXT_NONCE_RETRY_MS), one older than `nextNonce` refuses the field with 400 (schema
   * validation: "body must NOT have additional properties"; the field is then not asked for during
   * NEXT_NONCE_RETRY_MS). Any other refusal is this round's failure.
   */
  private async push(nonce: string, evidence: Evidence): Promise<VerdictResponse> {
    const now = performance.now();
    const ask = now >= this.nextNonceUnsupportedUntil;
    const binary = now >= this.binaryUnsupportedUntil;
    try {
      return await pushAttestationEvidence(this.o.client, nonce, evidence, { askNextNonce: ask, binary });
    } catch (e) {
      const status = isEdgeguardError(e) ? (e.details as { status?: unknown } | undefined)?.status : undefined;
      if (binary && status === 415) {
        this.binaryUnsupportedUntil = performance.now() + NEXT_NONCE_RETRY_MS;
        this.o.log.warn(
          { err: e },
          'the control plane refused the binary evidence body (an older control plane?): pushing JSON',
        );
        return this.push(nonce, evidence);
      }
      if (!ask || binary || !refusedUnknownField(e)) throw e;
      this.nextNonceUnsupportedUntil = performance.now() + NEXT_NONCE_RETRY_MS;
      this.o.log.warn(
        { err: e },
        'the control plane refused evidence that asks for the next nonce (an older control plane?): pushing without it',
      );
      return pushAttestationEvidence(this.o.client, nonce, evidence, { binary: false });
    }
  }

  /** The held nonce if it is still usable; either way it is not held any more (single use). */
  private takeHeldNonce(): HeldNonce | undefined {
    const held = this.held;
    this.held = undefined;
    return held && performance.now() < held.usableUntil ? held : undefined;
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.pushNow().then(
        () => {
          const wait = jittered(this.o.intervalMs ?? 60_000);
          // Before the held nonce runs out, so that the next round needs no /nonce request.
          const held = this.held ? Math.max(0, this.held.usableUntil - performance.now()) : Infinity;
          this.schedule(Math.min(wait, held));
        },
        () =>
          this.schedule(
            backoffDelay(
              this.report.consecutiveFailures,
              Math.min(this.o.intervalMs ?? 60_000, 5_000),
              this.o.backoffMaxMs ?? 600_000,
              Math.random(),
            ),
          ),
      );
    }, delayMs);
    this.timer.unref();
  }
}

/** The mean interval, +-25 %: a fleet rebooted together does not keep reporting in lockstep. */
function jittered(meanMs: number): number {
  return backoffDelay(1, meanMs, meanMs * 2, Math.random());
}

/**
 * The reporter of a running agent: the AK and TPM of the enrolled device directory, the device
 * identity's mTLS client; verdicts go to the lease when there is one.
 */
export async function agentAttestationReporter(
  o: {
    deviceDir: string;
    eventLogPath: string;
    intervalMs: number;
    log?: AttestationReporterOptions['log'] | undefined;
  },
  identity: { client(): FleetClient },
  onVerdict?: (v: VerdictResponse) => void,
): Promise<AttestationReporter> {
  const { tpm } = await readDeviceFile(o.deviceDir);
  if (!tpm)
    throw new EdgeguardError(
      'EG_CONFIG',
      `${o.deviceDir} is a software-bound device: it has no TPM attestation key; set attestation.enabled: false.`,
    );
  return new AttestationReporter({
    client: identity.client(),
    tpm: new TpmClient({ tcti: process.env.EDGEGUARD_TPM_TCTI ?? tpm.tcti }),
    ak: await readDeviceAk(o.deviceDir),
    eventLogPath: o.eventLogPath,
    intervalMs: o.intervalMs,
    log: o.log ?? SILENT,
    ...(onVerdict ? { onVerdict } : {}),
  });
}

const SILENT = { info: () => undefined, warn: () => undefined, error: () => undefined };
