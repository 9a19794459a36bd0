/**
 * `edgeguard demo --only keys,release` on a real swtpm, a real control plane and the real CLI: an
 * unattested device is refused its release (403 EG_ATTEST_REFUSED, audited); after a passing
 * verdict it installs mnist 4 into an A/B slot with its smoke test and reports it; a replayed old
 * timestamp and the older mnist 3 are refused with their reasons, and slot a still serves mnist 4.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { demoStepResult } from '../helpers/cli.ts';
import { TPM_SKIP } from '../helpers/swtpm.ts';

test('demo release: refused unattested, installed attested, rollbacks refused', { skip: TPM_SKIP }, async () => {
  const stepResult = await demoStepResult('keys,release', 'release');
  const result = stepResult as {
    unattested: Record<string, unknown>;
    verdict: boolean;
    installed: Record<string, unknown>;
    floor: Record<string, unknown>;
    status: Record<string, unknown>;
    rollback: Record<string, unknown>;
  };
  assert.deepEqual(result.unattested, { status: 403, code: 'EG_ATTEST_REFUSED', reason: 'attestation', audited: true });
  assert.equal(result.verdict, true);
  assert.deepEqual(result.installed, { version: 4, slot: 'a', smokeLabel: '3' });
  assert.deepEqual(result.floor, { provider: 'tpm', value: 4 });
  assert.deepEqual(result.status, { assigned: 4, installed: 4 });
  assert.deepEqual(result.rollback, {
    oldTimestamp: 'rollback',
    trustedTimestamp: 3,
    olderVersion: 'below-minimum',
    floor: 4,
    activeSlot: 'a',
  });
});
