/**
 * The lease in a running agent (real ONNX Runtime, real mutual TLS to a real control plane): the
 * agent answers inference while its check-ins succeed; after `device revoke` it answers 503
 * EG_LOCKED, releases its sessions and shows the loss in /healthz. The time from the revocation to
 * the sessions being released is measured and printed (bound: one check-in interval plus one
 * request), awaited on the lease's signal, never slept for.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { FleetClient } from '../../src/fleet/index.ts';
import { startTestFleet, type TestFleet } from '../server/fleet-helpers.ts';
import { infer, pngOf, serveFixture, startService } from './serve-fixture.ts';

describe('agent serve with a lease', () => {
  let fleet: TestFleet;
  let admin: FleetClient;

  before(async () => {
    fleet = await startTestFleet();
    admin = fleet.client(await fleet.adminCredential());
  });
  after(async () => fleet?.stop());

  test('a revoked device stops answering inference within one check-in', async (t) => {
    const f = await serveFixture(t);
    const device = await fleet.deviceCredential();
    await writeFile(join(f.dir, 'fleet-ca.pem'), fleet.ca.rootPem);
    await writeFile(join(f.dir, 'device.crt'), device.cert);
    await writeFile(join(f.dir, 'device.key'), device.key, { mode: 0o600 });
    const CHECK_IN_MS = 250;
    const agent = await startService(
      t,
      f.config({
        upload: { server: fleet.server.url, ca: 'fleet-ca.pem', cert: 'device.crt', key: 'device.key' },
        renewal: { enabled: false },
        journal: { enabled: false },
        lease: { enabled: true, checkInIntervalMs: CHECK_IN_MS },
      }),
    );
    const digit = await pngOf(new Array(784).fill(0).map((_, i) => (i % 28 > 10 && i % 28 < 16 ? 1 : 0)));
    assert.equal((await infer(agent.url, digit, 'image/png')).status, 200);
    assert.equal(agent.lease!.holds(), true);

    const lost = agent.lease!.whenLost();
    const revokedAt = performance.now();
    await admin.call('POST', `/v1/devices/${device.deviceId}/revoke`, {});
    const loss = await lost;
    const elapsed = performance.now() - revokedAt;
    t.diagnostic(`revocation to sessions released: ${elapsed.toFixed(0)} ms (check-in every ${CHECK_IN_MS} ms)`);
    assert.equal(loss.reason, 'revoked');

    const refused = await infer(agent.url, digit, 'image/png');
    assert.equal(refused.status, 503);
    assert.equal(refused.body.error?.code, 'EG_LOCKED');
    const health = (await (await fetch(`${agent.url}/healthz`)).json()) as { lease: { holds: boolean; lost: unknown } };
    assert.equal(health.lease.holds, false);
    assert.deepEqual((health.lease.lost as { reason: string }).reason, 'revoked');
  });
});
