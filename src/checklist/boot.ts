/**
 * EG-02 (Secure Boot on, from efivarfs) and EG-07 (remote attestation before updates). The local
 * variables say what the firmware enforces now; EG-07 asks the control plane for a verdict on a
 * quote made now (when the caller supplies the round), since the control plane's gate decides.
 */
import { join } from 'node:path';
import { FILE_CAPS, isEdgeguardError, readBounded } from '../errors/index.ts';
import { EFI_GLOBAL_VARIABLE_GUID, readSecureBootState } from '../harden/index.ts';
import { readDeviceFile, DEVICE_FILES } from '../keystore/index.ts';
import { exists, sha256Hex } from './evidence.ts';
import type { CheckDefinition, Evidence } from './types.ts';

async function efiVariableEvidence(root: string): Promise<Evidence[]> {
  const evidence: Evidence[] = [];
  for (const name of ['SecureBoot', 'SetupMode']) {
    const path = join(root, 'sys', 'firmware', 'efi', 'efivars', `${name}-${EFI_GLOBAL_VARIABLE_GUID}`);
    const bytes = await readBounded(path, FILE_CAPS.key, 'read the UEFI variable').catch(() => undefined);
    if (bytes) evidence.push({ name: `${name} variable (attributes + value)`, value: bytes.toString('hex'), path });
    if (bytes) evidence.push({ name: `${name} variable sha256`, value: sha256Hex(bytes), path });
  }
  return evidence;
}

export const secureBoot: CheckDefinition = {
  id: 'EG-02',
  title: 'UEFI Secure Boot enforced',
  audit: 'the SecureBoot and SetupMode UEFI variables in efivarfs (sys/firmware/efi/efivars)',
  expected: 'SecureBoot = 1 and SetupMode = 0 (user mode)',
  remediation:
    "enable Secure Boot in the firmware setup and enroll your platform key; the binding key's PCR 7 policy then ties the model key to it",
  async run(target) {
    const evidence = await efiVariableEvidence(target.root);
    try {
      const state = await readSecureBootState(target.root);
      if (state.status === 'not-uefi')
        return {
          status: 'NOT-AVAILABLE',
          actual: 'the machine did not boot through UEFI (no efi directory)',
          evidence,
        };
      if (state.status === 'unreadable') return { status: 'WARN', actual: state.reason, evidence };
      const actual = `SecureBoot = ${Number(state.secureBoot)}, SetupMode = ${Number(state.setupMode)}`;
      return { status: state.secureBoot && !state.setupMode ? 'PASS' : 'FAIL', actual, evidence };
    } catch (e) {
      if (!isEdgeguardError(e)) throw e;
      return { status: 'FAIL', actual: `the variables cannot be trusted: ${e.code}: ${e.message}`, evidence };
    }
  },
};

export const attestationBeforeUpdates: CheckDefinition = {
  id: 'EG-07',
  title: 'remote attestation before updates',
  audit:
    "the device's attestation key (device.json, ak.tpm.*), agent.yaml's attestation: section, and a verdict of the control plane on a quote made now",
  expected:
    'a TPM attestation key, the agent pushing quotes with the event log, and a passing verdict: the control plane hands updates only to a device with a fresh passing verdict',
  remediation:
    'set attestation.enabled: true in agent.yaml (with upload.device) and assign a boot policy (edgeguard attest policy assign); a failing verdict names what to fix',
  async run(target) {
    const device = await readDeviceFile(target.deviceDir);
    if (device.provider !== 'tpm' || !device.tpm)
      return {
        status: 'NOT-AVAILABLE',
        actual: `no TPM on this device (${device.posture}): it cannot produce a quote`,
        evidence: [{ name: 'key store provider', value: device.provider }],
      };
    const evidence: Evidence[] = [{ name: 'attestation key name', value: device.tpm.akName }];
    for (const file of [DEVICE_FILES.akTpmPublic, DEVICE_FILES.akTpmPrivate])
      if (!(await exists(join(target.deviceDir, file))))
        return {
          status: 'FAIL',
          actual: `the attestation key blob ${file} is missing from the device directory`,
          evidence,
        };
    const section = target.config.attestation;
    evidence.push({ name: 'agent.yaml attestation.enabled', value: String(Boolean(section?.enabled)) });
    if (!section?.enabled)
      return {
        status: 'FAIL',
        actual:
          'the agent does not push attestation evidence (attestation.enabled is false): the control plane cannot appraise this boot, and its update gate refuses the device',
        evidence,
      };
    if (section.eventLog) evidence.push({ name: 'event log', value: section.eventLog, path: section.eventLog });
    if (!target.attest)
      return {
        status: 'WARN',
        actual:
          'attestation is configured, but no verdict was asked for (offline run): the control plane decides whether this boot is trusted',
        evidence,
      };
    let verdict;
    try {
      verdict = await target.attest();
    } catch (e) {
      return {
        status: 'WARN',
        actual: `attestation is configured, but no verdict could be had now: ${isEdgeguardError(e) ? `${e.code}: ${e.message}` : (e as Error).message}`,
        evidence,
      };
    }
    evidence.push({ name: 'verdict id', value: verdict.verdictId });
    if (verdict.trustedUntil) evidence.push({ name: 'trusted until', value: verdict.trustedUntil });
    for (const r of verdict.reasons) evidence.push({ name: `reason ${r.code}`, value: r.detail });
    return verdict.pass
      ? {
          status: 'PASS',
          actual: `a quote made now passed the control plane's appraisal; trusted until ${verdict.trustedUntil ?? '?'}`,
          evidence,
        }
      : {
          status: 'FAIL',
          actual: `the control plane refused this boot: ${verdict.reasons.map((r) => r.code).join(', ') || 'no reason given'}`,
          evidence,
          remediation:
            'fix what the reasons name (an unknown kernel or boot component, Secure Boot off, a PCR changed after boot), or authorise the new boot in the policy; until then the device gets no updates',
        };
  },
};
