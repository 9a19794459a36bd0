/**
 * Re-enrollment keeps the old journal: it is forwarded with the old credentials first, and
 * DIR/fleet is moved aside, never deleted; entries that cannot be delivered (revoked device)
 * block re-enrollment unless the caller archives them.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Journal, journalSignerFromKey, type AuditEvent } from '../../src/audit/index.ts';
import { initDevice } from '../../src/keystore/index.ts';
import {
  FLEET_JOURNAL_FILE,
  FLEET_SUBDIR,
  deviceClient,
  enrollDevice,
  loadDeviceCredential,
  retireEnrollment,
} from '../../src/fleet/index.ts';
import { isEdgeguardError } from '../../src/errors/index.ts';
import { auditServerPlugin } from '../../src/server/routes/audit.ts';
import { startTestFleet, type TestFleet } from '../server/fleet-helpers.ts';
import { eventually } from '../helpers/wait.ts';

describe('re-enrollment', () => {
  let work: string;
  let fleet: TestFleet;
  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'eg-reenroll-'));
    const dataDir = join(work, 'server');
    fleet = await startTestFleet({
      dataDir,
      policy: { allowSoftwareDevices: true },
      plugins: [auditServerPlugin({ dataDir, checkpointIntervalMs: 100 })],
    });
  });
  after(async () => {
    await fleet?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  /** An enrolled software device whose journal holds two entries the server has not seen. */
  async function enrolledWithJournal(label: string): Promise<{ dir: string; deviceId: string }> {
    const admin = fleet.client(await fleet.adminCredential(`admin-${label}`));
    const dir = join(work, label);
    await initDevice({ dir });
    const enrolling = enrollDevice({
      deviceDir: dir,
      server: fleet.server.url,
      caPem: fleet.ca.rootPem,
      label,
      poll: { initialMs: 100, maxMs: 300, timeoutMs: 60_000 },
    });
    const deviceId = await eventually(`${label} pending`, async () => {
      const listed = await admin.call<{ devices: Array<{ id: string; label: string | null }> }>(
        'GET',
        '/v1/devices?status=pending',
      );
      return listed.body.devices.find((d) => d.label === label)?.id;
    });
    await admin.call('POST', `/v1/devices/${deviceId}/approve`);
    await enrolling;
    const cred = await loadDeviceCredential(dir);
    const key = createPrivateKey(cred.keyPem);
    const journal = await Journal.open(join(dir, FLEET_SUBDIR, FLEET_JOURNAL_FILE), journalSignerFromKey(key), key);
    // Ordinary device events (a tamper report would make the control plane revoke the device).
    const event = (reason: string): AuditEvent => ({
      type: 'agent.stopped',
      time: new Date().toISOString(),
      actor: { kind: 'device', id: deviceId },
      subject: deviceId,
      outcome: 'success',
      details: { reason, uptimeS: 1 },
    });
    await journal.append([event('a'), event('b')]);
    return { dir, deviceId };
  }

  it('forwards the old journal, then moves DIR/fleet aside', async () => {
    const { dir } = await enrolledWithJournal('kiosk-1');
    const cred = await loadDeviceCredential(dir);
    const retired = await retireEnrollment(dir, { archive: false });
    assert.equal(retired.unforwarded, 0);
    assert.equal(existsSync(join(dir, FLEET_SUBDIR)), false);
    assert.ok(existsSync(join(retired.archivedTo, FLEET_JOURNAL_FILE)), 'the journal is kept');
    const client = deviceClient(cred);
    try {
      const head = await client.call<{ seq: number }>('GET', '/v1/audit/journal/head');
      assert.equal(head.body.seq, 1, 'both entries reached the control plane');
    } finally {
      client.close();
    }
  });

  it('refuses while entries cannot be delivered; --archive moves them aside with the journal', async () => {
    const { dir, deviceId } = await enrolledWithJournal('kiosk-2');
    const admin = fleet.client(await fleet.adminCredential('revoker'));
    await admin.call('POST', `/v1/devices/${deviceId}/revoke`, { reason: 'keyCompromise' });
    await assert.rejects(
      retireEnrollment(dir, { archive: false }),
      (e) => isEdgeguardError(e, 'EG_AUDIT_UNAVAILABLE') && /2 entries/.test(e.message),
    );
    assert.ok(existsSync(join(dir, FLEET_SUBDIR, FLEET_JOURNAL_FILE)), 'nothing moved or deleted');
    const retired = await retireEnrollment(dir, { archive: true });
    assert.equal(retired.unforwarded, 2);
    assert.ok(existsSync(join(retired.archivedTo, FLEET_JOURNAL_FILE)));
    assert.equal(existsSync(join(dir, FLEET_SUBDIR)), false);
  });
});
