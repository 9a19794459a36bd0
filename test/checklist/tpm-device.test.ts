/**
 * EG-01 and EG-07 on devices whose key store is a real swtpm: the binding key's PolicyPCR
 * selection and digest are the evidence; a policy that leaves out PCR 7 (the Secure Boot state)
 * fails; the attestation key is named but attestation before updates is not available yet.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadAgentConfig } from '../../src/agent/index.ts';
import { runChecklist, type CheckResult } from '../../src/checklist/index.ts';
import { readDeviceFile } from '../../src/keystore/index.ts';
import { TPM_SKIP, startTestTpm, stopTestTpm, type Swtpm } from '../helpers/swtpm.ts';
import { makeDemoDevice, type DemoDevice } from './demo-device.ts';

async function checklistOf(device: DemoDevice): Promise<Map<string, CheckResult>> {
  const config = await loadAgentConfig(device.configPath);
  const results = await runChecklist({
    deviceDir: device.deviceDir,
    configPath: device.configPath,
    config,
    root: device.root,
  });
  return new Map(results.map((r) => [r.id, r]));
}

describe('checklist on a TPM-backed device', { skip: TPM_SKIP }, () => {
  let tpm: Swtpm | undefined;
  let base: string;

  before(async () => {
    tpm = await startTestTpm();
    base = await mkdtemp(join(tmpdir(), 'eg-checklist-tpm-'));
  });
  after(async () => {
    await stopTestTpm(tpm);
    await rm(base, { recursive: true, force: true });
  });

  test('the default policy (PCRs 0-5, 7, 16): EG-01 passes with the policy as evidence', async () => {
    const device = await makeDemoDevice(join(base, 'default'), { tcti: tpm!.tcti });
    const byId = await checklistOf(device);
    const eg01 = byId.get('EG-01')!;
    assert.equal(eg01.status, 'PASS', eg01.actual);
    const tpmFile = (await readDeviceFile(device.deviceDir)).tpm!;
    const evidence = new Map(eg01.evidence.map((e) => [e.name, e.value]));
    assert.equal(evidence.get('PCR selection'), tpmFile.pcrs);
    assert.equal(evidence.get('PolicyPCR digest'), tpmFile.policyDigest);
    const eg07 = byId.get('EG-07')!;
    assert.equal(eg07.status, 'NOT-AVAILABLE');
    assert.deepEqual(eg07.evidence, [{ name: 'attestation key name', value: tpmFile.akName }]);
  });

  test('a policy without PCR 7: EG-01 fails', async () => {
    const device = await makeDemoDevice(join(base, 'no-pcr7'), { tcti: tpm!.tcti, pcrs: 'sha256:0,1,2' });
    const eg01 = (await checklistOf(device)).get('EG-01')!;
    assert.equal(eg01.status, 'FAIL');
    assert.match(eg01.actual, /does not cover PCR 7/);
  });
});
