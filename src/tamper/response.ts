/**
 * The tamper response: make the device's keys unusable before whoever opened the case can read
 * them, then say so. Steps, in this order, each bounded in time and timed:
 *
 *   1. stopServing   the agent answers 503 EG_LOCKED from here on (no new use of a key)
 *   2. wipeSecrets   content keys and model buffers in memory are zeroed, ORT sessions dropped
 *   3. persistLock   tamper.lock.json, durably, so a restart (or a crash in a later step) stays locked
 *   4. extendPcr     the tamper PCR is extended in the TPM: the binding key's PolicyPCR no longer
 *                    holds, so the TPM refuses every unwrap until the next boot
 *   5. journal       tamper.detected + device.locked into the fsynced device journal
 *   6. notify        the same events pushed to the control plane at once
 *
 * Fail closed: a step that fails or times out is recorded and the next one runs anyway; the
 * response never stops half way and never unlocks. A timed-out step is not cancelled (a tpm2-tools
 * child may still finish); the response just stops waiting for it.
 */
import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { canonicalJson, parseAuditEvent, type AuditEvent } from '../audit/index.ts';
import { EdgeguardError, isEdgeguardError, type ErrorCode } from '../errors/index.ts';
import type { TpmClient } from '../tpm/index.ts';
import { writeLockState, type LockState } from './lock-state.ts';
import type { TamperFinding } from './monitor.ts';

/** What the agent does for each step; the response decides the order and the time each gets. */
export interface TamperActions {
  stopServing(): void | Promise<void>;
  wipeSecrets(): void | Promise<void>;
  /** Append to the device journal and fsync before resolving. */
  journal(events: AuditEvent[]): void | Promise<void>;
  notifyControlPlane(events: AuditEvent[]): void | Promise<void>;
}

export interface TamperResponseOptions {
  actions: TamperActions;
  /** The device's TPM; undefined for a software key store, whose keys no PCR protects (the step fails). */
  tpm: TpmClient | undefined;
  pcr: { index: number; bank: 'sha1' | 'sha256' | 'sha384' | 'sha512' };
  /** Where tamper.lock.json goes (the agent's state directory). */
  stateDir: string;
  /** The actor and subject of the journal events. */
  deviceId: string;
  /** RFC 7638 thumbprint of the binding key in use: re-provisioning must replace it. */
  bindingKey: string;
  stepTimeoutMs: number;
}

export const TAMPER_RESPONSE_STEPS = [
  'stopServing',
  'wipeSecrets',
  'persistLock',
  'extendPcr',
  'journal',
  'notify',
] as const;
export type TamperResponseStepName = (typeof TAMPER_RESPONSE_STEPS)[number];

export interface TamperResponseStep {
  step: TamperResponseStepName;
  ok: boolean;
  /** Wall time the step took (or until it timed out), ms. */
  ms: number;
  error?: { code: ErrorCode; message: string };
}

export interface TamperResponseReport {
  finding: TamperFinding;
  /** True when every step succeeded. The device is locked either way. */
  ok: boolean;
  steps: TamperResponseStep[];
  totalMs: number;
  lockState: LockState;
  events: AuditEvent[];
}

async function runStep(
  step: TamperResponseStepName,
  timeoutMs: number,
  fn: () => void | Promise<void>,
): Promise<TamperResponseStep> {
  const start = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new EdgeguardError('EG_TIMEOUT', `the ${step} step did not finish within ${timeoutMs} ms.`)),
      timeoutMs,
    );
  });
  try {
    await Promise.race([Promise.resolve().then(fn), timeout]);
    return { step, ok: true, ms: performance.now() - start };
  } catch (e) {
    const error = isEdgeguardError(e)
      ? { code: e.code, message: e.message }
      : { code: 'EG_INTERNAL' as const, message: e instanceof Error ? e.message : String(e) };
    return { step, ok: false, ms: performance.now() - start, error };
  } finally {
    clearTimeout(timer);
  }
}

function detectedEvent(finding: TamperFinding, o: TamperResponseOptions): AuditEvent {
  return parseAuditEvent({
    type: 'tamper.detected',
    time: finding.at.toISOString(),
    actor: { kind: 'device', id: o.deviceId },
    subject: o.deviceId,
    outcome: 'failure',
    details: { sensor: finding.sensor, detail: `${finding.kind}: ${finding.cause}: ${finding.detail}`.slice(0, 2000) },
  });
}

/** device.locked says which earlier steps failed: an auditor must see a lock that was only partial. */
function lockedEvent(finding: TamperFinding, o: TamperResponseOptions, steps: TamperResponseStep[]): AuditEvent {
  const failed = steps.filter((s) => !s.ok).map((s) => s.step);
  return parseAuditEvent({
    type: 'device.locked',
    time: new Date().toISOString(),
    actor: { kind: 'device', id: o.deviceId },
    subject: o.deviceId,
    outcome: failed.length ? 'failure' : 'success',
    details: {
      reason: `tamper sensor ${finding.sensor}; ${failed.length ? `failed steps: ${failed.join(', ')}` : `keys wiped, PCR ${o.pcr.index} extended`}`,
    },
  });
}

/**
 * The value extended into the tamper PCR: the hash (in the PCR's bank) of the tamper.detected
 * event's canonical JSON, so an attestation verifier can tie the PCR to the journal entry.
 */
export function tamperPcrDigest(event: AuditEvent, bank: TamperResponseOptions['pcr']['bank']): Buffer {
  return createHash(bank).update(canonicalJson(event)).digest();
}

/** Run the response for a confirmed finding. Never throws for a failed step: read report.steps. */
export async function respondToTamper(finding: TamperFinding, o: TamperResponseOptions): Promise<TamperResponseReport> {
  const start = performance.now();
  const lockedAt = new Date().toISOString();
  const detected = detectedEvent(finding, o);
  const digest = tamperPcrDigest(detected, o.pcr.bank);
  const lockState: LockState = {
    type: 'edgeguard-tamper-lock',
    version: 1,
    lockedAt,
    sensor: finding.sensor,
    kind: finding.kind,
    cause: finding.cause,
    detail: finding.detail.slice(0, 2000),
    bindingKey: o.bindingKey,
    pcr: { index: o.pcr.index, bank: o.pcr.bank, digest: digest.toString('hex') },
  };
  const extend = async () => {
    if (!o.tpm)
      throw new EdgeguardError(
        'EG_TPM_UNAVAILABLE',
        'this device has no TPM (software key store): no PCR can refuse its keys; the lock state file alone keeps it locked.',
      );
    await o.tpm.extendPcr(o.pcr.index, o.pcr.bank, digest);
  };
  const steps: TamperResponseStep[] = [];
  const events: AuditEvent[] = [detected];
  const plan: Record<TamperResponseStepName, () => void | Promise<void>> = {
    stopServing: () => o.actions.stopServing(),
    wipeSecrets: () => o.actions.wipeSecrets(),
    persistLock: () => writeLockState(o.stateDir, lockState),
    extendPcr: extend,
    journal: () => {
      events.push(lockedEvent(finding, o, steps));
      return o.actions.journal(events);
    },
    notify: () => o.actions.notifyControlPlane(events),
  };
  for (const name of TAMPER_RESPONSE_STEPS) steps.push(await runStep(name, o.stepTimeoutMs, plan[name]));
  return { finding, ok: steps.every((s) => s.ok), steps, totalMs: performance.now() - start, lockState, events };
}
