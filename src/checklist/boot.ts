/**
 * EG-02 (Secure Boot on, from efivarfs) and EG-07 (remote attestation before updates). The local
 * variables say what the firmware enforces now; whether the control plane checks a quote before it
 * releases an update is the agent's wiring, reported as not available until the agent does it.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isEdgeguardError } from '../errors/index.ts';
import { EFI_GLOBAL_VARIABLE_GUID, readSecureBootState } from '../harden/index.ts';
import { readDeviceFile, DEVICE_FILES } from '../keystore/index.ts';
import { exists, sha256Hex } from './evidence.ts';
import type { CheckDefinition, Evidence } from './types.ts';

async function efiVariableEvidence(root: string): Promise<Evidence[]> {
  const evidence: Evidence[] = [];
  for (const name of ['SecureBoot', 'SetupMode']) {
    const path = join(root, 'sys', 'firmware', 'efi', 'efivars', `${name}-${EFI_GLOBAL_VARIABLE_GUID}`);
    const bytes = await readFile(path).catch(() => undefined);
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
    "the device's attestation key (device.json, ak.tpm.pub) and whether the agent asks for a verdict before it installs an update",
  expected: 'a TPM attestation key, and updates installed only after the control plane appraised a fresh quote',
  remediation:
    'initialise the device with a TPM (edgeguard device init --tpm); attestation before updates comes with an agent that requests a verdict',
  async run(target) {
    const device = await readDeviceFile(target.deviceDir);
    if (device.provider !== 'tpm' || !device.tpm)
      return {
        status: 'NOT-AVAILABLE',
        actual: `no TPM on this device (${device.posture}): it cannot produce a quote`,
        evidence: [{ name: 'key store provider', value: device.provider }],
      };
    const evidence: Evidence[] = [{ name: 'attestation key name', value: device.tpm.akName }];
    const hasAk = await exists(join(target.deviceDir, DEVICE_FILES.akTpmPublic));
    return {
      status: 'NOT-AVAILABLE',
      actual: hasAk
        ? 'the device has an attestation key, but this agent does not request an attestation verdict before updates'
        : 'the attestation key blobs are missing from the device directory',
      evidence,
    };
  },
};
