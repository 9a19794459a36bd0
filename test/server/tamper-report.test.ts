/**
 * A device journal that reports tampering (tamper.detected, device.locked) marks the device
 * `tampered` on the control plane and revokes its certificate: the next mTLS request with it is
 * refused. Ordinary journal events change nothing. Real TLS, real SQLite, the real audit plugin;
 * `edgeguard device show|list` (the compiled CLI: `npm run build` first) show the status.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createPrivateKey } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Journal, forwardJournal, journalSignerFromKey, type AuditEvent } from '../../src/audit/index.ts';
import { isEdgeguardError } from '../../src/errors/index.ts';
import type { DeviceView } from '../../src/fleet/index.ts';
import { auditServerPlugin, type AuditServerPlugin } from '../../src/server/routes/audit.ts';
import { startTestFleet, type TestFleet } from './fleet-helpers.ts';

function deviceEvent(deviceId: string, type: 'model.loaded' | 'tamper.detected' | 'device.locked'): AuditEvent {
  const base = { time: new Date().toISOString(), actor: { kind: 'device' as const, id: deviceId }, subject: deviceId };
  if (type === 'model.loaded')
    return {
      ...base,
      type,
      outcome: 'success',
      details: { modelSha256: 'aa'.repeat(32), name: 'mnist', keyProvider: 'tpm' },
    };
  if (type === 'tamper.detected')
    return { ...base, type, outcome: 'failure', details: { sensor: 'chassis', detail: 'intrusion0_alarm = 1' } };
  return { ...base, type, outcome: 'success', details: { reason: 'tamper sensor chassis; keys wiped' } };
}

const CLI = join(import.meta.dirname, '..', '..', 'bin', 'edgeguard.js');

describe('tamper reports from device journals', () => {
  let work: string;
  let fleet: TestFleet;
  let plugin: AuditServerPlugin;

  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'eg-tamper-report-'));
    plugin = auditServerPlugin({ dataDir: join(work, 'server'), checkpointIntervalMs: 100 });
    fleet = await startTestFleet({ dataDir: join(work, 'server'), plugins: [plugin] });
  });
  after(async () => {
    await fleet?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it('marks the device tampered, revokes its certificate and refuses it from then on', async () => {
    const adminCred = await fleet.adminCredential('operator');
    const admin = fleet.client(adminCred);
    const cred = await fleet.deviceCredential();
    const key = createPrivateKey(cred.key);
    const journal = await Journal.open(join(work, 'device.journal'), journalSignerFromKey(key), key);
    const device = fleet.client(cred);

    await journal.append([deviceEvent(cred.deviceId, 'model.loaded')]);
    await forwardJournal(journal, device);
    const before = await admin.call<DeviceView>('GET', `/v1/devices/${cred.deviceId}`);
    assert.equal(before.body.status, 'approved', 'an ordinary event changes nothing');
    assert.equal(before.body.tamperedAt, null);

    await journal.append([deviceEvent(cred.deviceId, 'tamper.detected'), deviceEvent(cred.deviceId, 'device.locked')]);
    const fwd = await forwardJournal(journal, device);
    assert.equal(fwd.logged, 2, 'the tamper events themselves are logged');

    const after = await admin.call<DeviceView>('GET', `/v1/devices/${cred.deviceId}`);
    assert.equal(after.body.status, 'tampered');
    assert.ok(after.body.tamperedAt);
    assert.ok(after.body.revokedAt);
    const listed = await admin.call<{ devices: DeviceView[] }>('GET', '/v1/devices?status=tampered');
    assert.deepEqual(
      listed.body.devices.map((d) => d.id),
      [cred.deviceId],
    );
    assert.equal(await fleet.server.ctx.store.certificateStatus(cred.serial), 'revoked');

    // What the operator sees.
    for (const [name, text] of [
      ['admin.crt', adminCred.cert],
      ['admin.key', adminCred.key],
      ['fleet-ca.pem', fleet.ca.rootPem],
    ] as const)
      writeFileSync(join(work, name), text, { mode: 0o600 });
    const conn = ['--server', fleet.server.url, '--cert', join(work, 'admin.crt'), '--key', join(work, 'admin.key')];
    const cli = async (...args: string[]) =>
      (await promisify(execFile)(process.execPath, [CLI, ...args, ...conn, '--ca', join(work, 'fleet-ca.pem')])).stdout;
    assert.match(await cli('device', 'show', cred.deviceId), /: tampered\n[\s\S]*tampered: +20\d\d-/);
    assert.match(await cli('device', 'list', '--status', 'tampered'), new RegExp(`${cred.deviceId} +tampered`));

    // A fresh connection with the revoked certificate is refused.
    const again = fleet.client(cred);
    await assert.rejects(
      () => again.call('GET', '/v1/device/self'),
      (e: unknown) => isEdgeguardError(e, 'EG_UNAUTHORIZED'),
    );

    // The control plane's own revocation is in the audit log, with the device as the actor.
    const log = plugin.log!;
    await log.flush();
    const cp = await log.publishCheckpoint();
    const revoked: string[] = [];
    for (let i = 0; i < cp.size; i++) {
      const p = await log.inclusionProof(i, cp.size);
      const text = Buffer.from(p.leaf).toString('utf8');
      if (text.includes('device.revoked') && text.includes(cred.deviceId)) revoked.push(text);
    }
    assert.equal(revoked.length, 1, 'one device.revoked event');
    assert.match(revoked[0]!, /tamper report \(tamper\.detected\)/);
  });
});
