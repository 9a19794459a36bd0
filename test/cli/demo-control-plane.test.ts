/**
 * `edgeguard demo --only control-plane` through the real CLI: enrollment (swtpm when installed,
 * else the labelled software key store), the refusals, and a flood of idle connections from one
 * address held to its cap while the operator's kept-alive call is answered.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { demoStepResult } from '../helpers/cli.ts';

test('demo control-plane: refusals, and a connection flood held to the per-address cap', async () => {
  const stepResult = await demoStepResult('control-plane', 'control-plane');
  const result = stepResult as {
    noClientCert: number;
    deviceOnAdmin: number;
    afterRevoke: number;
    flood: { held: number; refused: number; cap: number; adminStatus: number };
  };
  assert.deepEqual([result.noClientCert, result.deviceOnAdmin, result.afterRevoke], [401, 403, 401]);
  // 100 idle connections: at most the cap held (the operator's own connection counts), the rest closed.
  assert.equal(result.flood.cap, 64);
  assert.ok(result.flood.held <= 64 && result.flood.held >= 62, JSON.stringify(result.flood));
  assert.equal(result.flood.held + result.flood.refused, 100);
  assert.equal(result.flood.adminStatus, 200);
});
