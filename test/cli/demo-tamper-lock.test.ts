/**
 * `edgeguard demo --only keys,pack,tamper-lock` on a real swtpm, a real control plane and the real
 * CLI: opening the case locks the enrolled agent, the response's every step succeeds (the tamper
 * PCR extended on the TPM), the TPM then refuses the binding key, the control plane marks the
 * device tampered, and a restart stays locked.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TAMPER_RESPONSE_STEPS } from '../../src/tamper/index.ts';
import { demoStepResult } from '../helpers/cli.ts';
import { TPM_SKIP } from '../helpers/swtpm.ts';

test(
  'demo tamper-lock: a TPM-bound device locks, the TPM refuses its key, the control plane revokes it',
  { skip: TPM_SKIP },
  async () => {
    const r = await demoStepResult('keys,pack,tamper-lock', 'tamper-lock');
    assert.equal(r.keyProvider, 'tpm');
    assert.deepEqual(r.steps, Object.fromEntries(TAMPER_RESPONSE_STEPS.map((s) => [s, 'ok'])));
    assert.equal(r.keyAfter, 'EG_TPM_POLICY');
    assert.equal(r.status, 'tampered');
    assert.equal(r.restart, 'EG_LOCKED');
    assert.deepEqual((r.logTypes as string[]).slice(-3), [
      'device:tamper.detected',
      'device:device.locked',
      'server:device.revoked',
    ]);
  },
);
