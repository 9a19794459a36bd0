/**
 * The device lease against a real control plane over mutual TLS: a revoked certificate ends it at
 * the next check-in, a failed verdict at once, silence when the offline grace runs out; an
 * unreachable server alone does not. Each loss is awaited (the onLost signal), never slept for;
 * the time from revocation to onLost is measured and printed as a diagnostic.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import { DeviceLease, type LeaseLoss } from '../../src/agent/index.ts';
import { FleetClient } from '../../src/fleet/index.ts';
import { startTestFleet, type TestFleet } from '../server/fleet-helpers.ts';

const log = pino({ level: 'silent' });

function leaseWith(checkIn: () => Promise<unknown>, o: { offlineGraceMs?: number; checkInIntervalMs?: number } = {}) {
  let lost!: (l: LeaseLoss) => void;
  const losses = new Promise<LeaseLoss>((resolve) => (lost = resolve));
  const lease = new DeviceLease({ checkIn, onLost: (l) => lost(l), log, ...o });
  return { lease, losses };
}

describe('device lease', () => {
  let fleet: TestFleet;
  let admin: FleetClient;

  before(async () => {
    fleet = await startTestFleet();
    admin = fleet.client(await fleet.adminCredential());
  });
  after(async () => fleet?.stop());

  test('a revoked device loses its lease at the next check-in', async (t) => {
    const cred = await fleet.deviceCredential();
    const client = fleet.client(cred);
    const { lease, losses } = leaseWith(() => client.call('GET', '/v1/device/self'), { checkInIntervalMs: 100 });
    lease.start();
    await lease.checkInNow();
    assert.equal(lease.holds(), true);
    const revokedAt = performance.now();
    await admin.call('POST', `/v1/devices/${cred.deviceId}/revoke`, {});
    const loss = await losses;
    t.diagnostic(`revocation to onLost: ${(performance.now() - revokedAt).toFixed(0)} ms (check-in every 100 ms)`);
    assert.equal(loss.reason, 'revoked');
    assert.equal(lease.holds(), false);
  });

  test('a failed verdict ends the lease at once; a passing one keeps it', async () => {
    const { lease, losses } = leaseWith(async () => undefined);
    lease.onVerdict({ verdictId: 'a', pass: true, codes: [], reasons: [], events: [] });
    assert.equal(lease.holds(), true);
    lease.onVerdict({
      verdictId: 'b',
      pass: false,
      codes: ['KERNEL_NOT_ALLOWED'],
      reasons: [{ code: 'KERNEL_NOT_ALLOWED', detail: 'x' }],
      events: [],
    });
    assert.equal(lease.holds(), false);
    assert.deepEqual([(await losses).reason, (await losses).detail], ['attestation-failed', 'KERNEL_NOT_ALLOWED']);
    lease.stop();
  });

  test('an unreachable control plane is served through the grace, then the lease expires', async () => {
    const unreachable = new FleetClient({ server: 'https://127.0.0.1:1', ca: fleet.ca.rootPem });
    const { lease, losses } = leaseWith(() => unreachable.call('GET', '/v1/device/self'), {
      offlineGraceMs: 300,
      checkInIntervalMs: 50,
    });
    lease.start();
    await lease.checkInNow();
    assert.equal(lease.lost, undefined, 'a network failure alone does not end the lease');
    const loss = await losses;
    assert.equal(loss.reason, 'expired');
    assert.equal(lease.holds(), false);
    lease.stop();
    unreachable.close();
  });
});
