import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createCsr } from '../../src/pki/index.ts';
import { startTestFleet, type TestFleet } from './fleet-helpers.ts';

type Renewed = { certificateChain: string; error?: { code: string; message: string } };

describe('device certificate renewal: rate limited, the superseded certificate revoked after an overlap', () => {
  let fleet: TestFleet;
  before(async () => {
    fleet = await startTestFleet({
      policy: { renewal: { maxPerWindow: 2, windowMs: 24 * 3600_000, overlapMs: 0, sweepIntervalMs: 50 } },
    });
  });
  after(async () => fleet.stop());

  it(
    'refuses renewals beyond the limit with 429, and revokes the renewed-away certificate',
    { timeout: 20_000 },
    async () => {
      const device = await fleet.deviceCredential();
      const old = fleet.client(device);
      const csr = await createCsr(device.keys, device.deviceId);
      const first = await old.send<Renewed>('POST', '/v1/device/renew', { csr });
      assert.equal(first.status, 200, JSON.stringify(first.body));
      const renewed = fleet.client({ cert: first.body.certificateChain, key: device.key });
      const second = await renewed.send<Renewed>('POST', '/v1/device/renew', { csr });
      assert.equal(second.status, 429, JSON.stringify(second.body));
      assert.equal(second.body.error?.code, 'EG_RATE_LIMITED');
      assert.match(second.body.error!.message, /renew/);

      // The sweep revokes the superseded certificate once the overlap (0 here) has passed.
      for (;;) {
        const r = await old.send<{ error: { code: string } }>('GET', '/v1/device/self');
        if (r.status === 401) break;
        assert.equal(r.status, 200);
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      assert.equal((await fleet.server.ctx.store.getCertificate(device.serial))?.revocation_reason, 'superseded');
      assert.equal((await renewed.send('GET', '/v1/device/self')).status, 200);
    },
  );
});
