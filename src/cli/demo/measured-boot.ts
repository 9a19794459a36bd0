/**
 * What the demo's measured-boot steps share (attestation, kernel update): a swtpm that boots, the
 * operator's boot policy made from a golden log and assigned to the device, the device's evidence
 * pushed as `agent serve` pushes it, and the verdict as the audit log recorded it.
 */
import { rm, writeFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { AttestationReporter, readDeviceAk } from '../../agent/index.ts';
import { createBootPolicy, formatBootPolicyYaml } from '../../attest/index.ts';
import { decodeLogLeaf, type AuditEvent } from '../../audit/index.ts';
import { parseEventLog, playBoot, syntheticBootEvents, type SyntheticBoot } from '../../eventlog/index.ts';
import { deviceClient, loadDeviceCredential, type VerdictResponse } from '../../fleet/index.ts';
import { TPM_ALG, TpmClient, startSwtpm, type Swtpm } from '../../tpm/index.ts';
import type { DemoContext } from './context.ts';
import type { DemoFleet } from './fleet-device.ts';

const BANKS = [TPM_ALG.SHA256];
const SILENT = { info: () => undefined, warn: () => undefined, error: () => undefined };

/** The swtpm of the demo device, power-cycled between boots as a real one is by a reboot. */
export class DemoTpm {
  private constructor(public running: Swtpm) {}

  static async start(): Promise<DemoTpm> {
    return new DemoTpm(await startSwtpm());
  }

  get tcti(): string {
    return this.running.tcti;
  }

  get client(): TpmClient {
    return new TpmClient({ tcti: this.running.tcti });
  }

  /** Play `boot` into the TPM and write its event log to `logPath`, where firmware would keep it. */
  async boot(boot: SyntheticBoot, logPath: string): Promise<Buffer> {
    const log = await playBoot(this.client, BANKS, syntheticBootEvents(boot, BANKS));
    await writeFile(logPath, log);
    return log;
  }

  /**
   * An orderly reboot: TPM2_Shutdown(CLEAR), off, on (a TPM Reset: PCRs cleared, resetCount + 1).
   * swtpm comes back on another port: pass `tcti` where device.json's TCTI would be used.
   */
  async reboot(): Promise<void> {
    await this.client.shutdown();
    await this.running.stop();
    this.running = await startSwtpm({ stateDir: this.running.stateDir, ca: this.running.ca });
  }

  /** Stop it and delete its state and its CA (a restarted swtpm does not own the CA it was given). */
  async remove(): Promise<void> {
    await this.running.remove();
    await rm(this.running.ca.dir, { recursive: true, force: true });
  }
}

export function describeVerdict(v: VerdictResponse): string {
  if (v.pass) return `PASS, trusted until ${v.trustedUntil}`;
  return `FAIL ${v.codes.join(', ')}: ${v.reasons[0]?.detail ?? ''}`;
}

/** `attest policy create --from-log LOG -o POLICY` and `attest policy assign POLICY --device ID`. */
export async function assignBootPolicy(
  ctx: DemoContext,
  fleet: DemoFleet,
  log: { bytes: Buffer; path: string },
  policyPath: string,
): Promise<{ sha256: string }> {
  const yaml = formatBootPolicyYaml(createBootPolicy(parseEventLog(log.bytes)));
  await writeFile(policyPath, yaml);
  ctx.command(`attest policy create --from-log ${log.path} -o ${policyPath}`);
  const policy = await fleet.controlPlane.attestation.verifier!.assignPolicy(
    { device: fleet.deviceId },
    yaml,
    basename(policyPath),
    'demo-operator',
  );
  ctx.command(`attest policy assign ${policyPath} --device ${fleet.deviceId}`);
  return policy;
}

/**
 * One round of the device's attestation reporter: nonce, quote, event log, verdict. The TLS key is
 * opened afresh, as a restarted agent would, on the swtpm's port of this boot.
 */
export async function pushEvidence(fleet: DemoFleet, tpm: DemoTpm, eventLogPath: string): Promise<VerdictResponse> {
  const client = deviceClient(await loadDeviceCredential(fleet.deviceDir, { tcti: tpm.tcti }));
  try {
    const ak = await readDeviceAk(fleet.deviceDir);
    return await new AttestationReporter({ client, tpm: tpm.client, ak, eventLogPath, log: SILENT }).pushNow();
  } finally {
    client.close();
  }
}

/** The newest event of `type` (default attestation.result) for the demo device in the control plane's Merkle log. */
export async function lastAuditResult(fleet: DemoFleet, type = 'attestation.result'): Promise<AuditEvent | undefined> {
  const log = fleet.controlPlane.audit.log!;
  await log.flush();
  const size = (await log.publishCheckpoint()).size;
  const events = (await log.getEntries(0, size)).map((l) => decodeLogLeaf(Buffer.from(l, 'utf8')).event);
  return events.findLast((e) => e.type === type && e.subject === fleet.deviceId);
}
