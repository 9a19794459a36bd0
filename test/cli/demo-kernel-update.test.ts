/**
 * `edgeguard demo --only keys,kernel-update` on a real swtpm, a real control plane and the real
 * CLI: an authorized kernel update unwraps the same model key again without re-provisioning, and
 * an unsigned Secure Boot change is refused (EG_TPM_POLICY) while the device still reports and the
 * failed verdict is audited.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { demoStepResult } from '../helpers/cli.ts';
import { TPM_SKIP } from '../helpers/swtpm.ts';

test(
  'demo kernel-update: authorized update keeps the key, unsigned change refused and reported',
  { skip: TPM_SKIP },
  async () => {
    const stepResult = await demoStepResult('keys,kernel-update', 'kernel-update');
    const { kernelUpdate, unauthorized } = stepResult as {
      kernelUpdate: Record<string, unknown>;
      unauthorized: Record<string, unknown>;
    };
    assert.deepEqual(kernelUpdate.differences, ['sha256:4']);
    assert.equal(kernelUpdate.refusedBeforeAuthorization, 'EG_TPM_POLICY');
    assert.match(String(kernelUpdate.authorization), /pcr-authorizations\/kernel-6\.1\.0-28\.json$/);
    assert.equal(kernelUpdate.sameKey, true);
    assert.equal(kernelUpdate.sameBindingKey, true);
    assert.equal(kernelUpdate.verdict, true);
    assert.deepEqual(unauthorized.differences, ['sha256:4', 'sha256:7']);
    assert.equal(unauthorized.refused, 'EG_TPM_POLICY');
    assert.equal(unauthorized.verdict, false);
    assert.deepEqual(unauthorized.codes, ['SECURE_BOOT_DISABLED']);
    assert.equal(unauthorized.gate, 'untrusted');
    assert.equal(unauthorized.audited, true);
  },
);
