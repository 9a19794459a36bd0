/** An enrollment that times out waiting for approval resumes where it stopped (software device, no TPM needed). */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initDevice } from '../../src/keystore/index.ts';
import { enrollDevice } from '../../src/fleet/index.ts';
import { isEdgeguardError } from '../../src/errors/index.ts';
import { startTestFleet, type TestFleet } from '../server/fleet-helpers.ts';

describe('agent enroll: resume after a timeout, refuse a wrong pinned CA', () => {
  let fleet: TestFleet;
  let work: string;
  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'eg-enroll-resume-'));
    fleet = await startTestFleet({ policy: { allowSoftwareDevices: true } });
  });
  after(async () => {
    await fleet.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it('gives up with EG_ENROLL while pending, then resumes and finishes after approval', async () => {
    const dir = join(work, 'dev');
    await initDevice({ dir });
    const opts = {
      deviceDir: dir,
      server: fleet.server.url,
      caPem: fleet.ca.rootPem,
      poll: { initialMs: 50, maxMs: 100, timeoutMs: 300 },
    };
    let deviceId: string | undefined;
    await assert.rejects(enrollDevice(opts), (e) => {
      deviceId = isEdgeguardError(e, 'EG_ENROLL') ? (e.details?.deviceId as string) : undefined;
      return deviceId !== undefined && /still pending/.test((e as Error).message);
    });
    const admin = await fleet.adminCredential();
    assert.equal((await fleet.client(admin).send('POST', `/v1/devices/${deviceId}/approve`)).status, 200);
    const r = await enrollDevice(opts);
    assert.equal(r.resumed, true);
    assert.equal(r.deviceId, deviceId);
    assert.equal(r.keyProvider, 'software');
  });

  it('refuses to talk to a server that the pinned CA did not issue', async () => {
    const dir = join(work, 'dev2');
    await initDevice({ dir });
    const other = await startTestFleet({ policy: { allowSoftwareDevices: true } });
    try {
      await assert.rejects(
        enrollDevice({ deviceDir: dir, server: fleet.server.url, caPem: other.ca.rootPem, poll: { timeoutMs: 1000 } }),
        (e) => isEdgeguardError(e, 'EG_TLS'),
      );
    } finally {
      await other.stop();
    }
  });
});
