/**
 * Demo step of remote attestation: a device bound to a swtpm plays a measured boot into it (a
 * synthetic UEFI boot: the PCRs extended and the matching event log written), enrolls, and the
 * operator makes a boot policy from that golden log and assigns it. The device's attestation
 * reporter (the one `agent serve` runs) pushes a quote over the control plane's nonce with the
 * log: pass, trusted until the window closes. Then the device reboots into a kernel the policy does
 * not know: refused with KERNEL_NOT_ALLOWED, the gate closes, and the alert is in the audit log.
 * Without swtpm the step is skipped: the software key store has no PCRs to quote.
 */
import { mkdir } from 'node:fs/promises';
import { defaultSyntheticBoot, parseEventLog } from '../../eventlog/index.ts';
import { missingSwtpmBinaries } from '../../tpm/index.ts';
import type { DemoStep } from './context.ts';
import { startDemoFleet, type DemoFleet } from './fleet-device.ts';
import { DemoTpm, assignBootPolicy, describeVerdict, lastAuditResult, pushEvidence } from './measured-boot.ts';

export const attestationStep: DemoStep = {
  id: 'attestation',
  title:
    'Remote attestation: a measured boot quoted by the TPM and appraised against a policy; a tampered boot refused',
  async run(ctx) {
    const missing = missingSwtpmBinaries();
    if (missing.length) {
      ctx.say(
        `swtpm is not installed (missing ${missing.join(', ')}): attestation SKIPPED. A software key store has no PCRs and no attestation key, so there is nothing to quote; with a TPM this step plays a boot, passes it, and refuses a boot with an unknown kernel.`,
      );
      return { skipped: true, reason: 'swtpm not installed' };
    }
    const tpm = await DemoTpm.start();
    let fleet: DemoFleet | undefined;
    try {
      const work = ctx.path('attestation');
      await mkdir(work, { recursive: true });
      const logPath = ctx.path('attestation', 'binary_bios_measurements');
      const golden = await tpm.boot(defaultSyntheticBoot(), logPath);
      ctx.say(
        `played a synthetic UEFI boot into swtpm: ${parseEventLog(golden).events.length} events extended into PCRs 0-9, log at ${logPath}`,
      );
      fleet = await startDemoFleet(ctx, 'attestation', {}, tpm.running);
      ctx.say(`device ${fleet.deviceId} enrolled with its TPM (EK certificate, AK) and approved`);

      const policyPath = ctx.path('attestation', 'golden.yaml');
      const policy = await assignBootPolicy(ctx, fleet, { bytes: golden, path: logPath }, policyPath);
      ctx.say(`policy ${policy.sha256.slice(0, 16)}… (Secure Boot required, PK/KEK/db, dbx, shim/grub/kernel digests)`);

      const push = () => pushEvidence(fleet!, tpm, logPath);
      ctx.say('the agent (agent.yaml attestation: { enabled: true }) asks for a nonce, quotes, pushes the log:');
      const passed = await push();
      ctx.say(`verdict: ${describeVerdict(passed)}`);
      const gate = fleet.controlPlane.attestation;
      ctx.command(`device attest-status ${fleet.deviceId}`);
      ctx.say(`gate: ${(await gate.attestationGate(fleet.deviceId)).state}`);

      await tpm.reboot();
      await tpm.boot({ ...defaultSyntheticBoot(), kernel: Buffer.from('vmlinuz-6.1.0-unsigned-by-us') }, logPath);
      ctx.say('the device reboots into a kernel the policy does not list');
      const refused = await push();
      ctx.say(`verdict: ${describeVerdict(refused)}`);
      if (refused.events.length > 0) ctx.say(`recorded with it: ${refused.events.map((e) => e.code).join(', ')}`);
      const status = await gate.attestationGate(fleet.deviceId);
      ctx.say(`gate: ${status.state} (${status.codes.join(', ')}): no model update is handed to this device`);
      const alert = await lastAuditResult(fleet);
      ctx.command(`audit list --type attestation.result --device-id ${fleet.deviceId}`);
      ctx.say(JSON.stringify({ type: alert?.type, outcome: alert?.outcome, details: alert?.details }));
      return {
        deviceId: fleet.deviceId,
        pass: passed.pass,
        trustedUntil: passed.trustedUntil,
        refused: refused.codes,
        events: refused.events.map((e) => e.code),
        gate: status.state,
        audited: alert?.outcome === 'failure',
      };
    } finally {
      await fleet?.server.close();
      await tpm.remove();
    }
  },
};
