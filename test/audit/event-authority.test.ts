/**
 * Who may append which event type through POST /v1/audit/events: an admin only the types an
 * operator's tools report (policy changes, releases published, attestation results, admin
 * actions); device-origin types (guard verdicts, model loads, tamper...) come only from a
 * device's signed journal, and the control plane's own (approvals, revocations, certificates,
 * journal gaps) only from the control plane itself. Anything else is 403 EG_FORBIDDEN.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPrivateKey } from 'node:crypto';
import { Journal, encodeJournalRecord, journalSignerFromKey, type AuditEvent } from '../../src/audit/index.ts';
import { auditServerPlugin } from '../../src/server/routes/audit.ts';
import { startTestFleet, type TestFleet } from '../server/fleet-helpers.ts';

const event = (type: string, details: Record<string, unknown>) => ({
  type,
  time: new Date().toISOString(),
  actor: { kind: 'admin', id: 'ignored' },
  outcome: 'success',
  details,
});
const sha = 'ab'.repeat(32);

describe('audit event-type authority', () => {
  let fleet: TestFleet;
  let dataDir: string;
  before(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'eg-authority-'));
    fleet = await startTestFleet({ dataDir, plugins: [auditServerPlugin({ dataDir, checkpointIntervalMs: 100 })] });
  });
  after(async () => {
    await fleet.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('an admin appends operator types, and is refused device-origin and control-plane types with 403', async () => {
    const admin = fleet.client(await fleet.adminCredential());
    for (const ok of [
      event('policy.changed', { policy: 'egress', newSha256: sha }),
      event('release.published', { releaseId: 'r1', modelSha256: sha, version: '1' }),
      event('admin.action', { action: 'rotate' }),
    ]) {
      const r = await admin.send('POST', '/v1/audit/events', ok);
      assert.equal(r.status, 200, `${ok.type}: ${JSON.stringify(r.body)}`);
    }
    for (const refused of [
      event('guard.flagged', { check: 'confidence', score: 1, threshold: 2 }),
      event('model.loaded', { modelSha256: sha, name: 'm', keyProvider: 'tpm' }),
      event('tamper.detected', { sensor: 's', detail: 'd' }),
      event('device.approved', { deviceId: 'dev-0123456789abcdef', approvedBy: 'mallory' }),
      event('cert.issued', {
        serial: '01',
        role: 'admin',
        subjectDn: 'CN=x',
        notAfter: new Date().toISOString(),
      }),
      event('audit.journal_gap', {
        deviceId: 'dev-0123456789abcdef',
        position: 0,
        expectedSeq: 0,
        reason: 'x',
      }),
    ]) {
      const r = await admin.send<{ error: { code: string; message: string } }>('POST', '/v1/audit/events', refused);
      assert.equal(r.status, 403, `${refused.type}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error.code, 'EG_FORBIDDEN');
      assert.match(r.body.error.message, new RegExp(refused.type.replace('.', '\\.')));
    }
  });

  it('a device cannot append through this route at all', async () => {
    const device = fleet.client(await fleet.deviceCredential());
    const r = await device.send(
      'POST',
      '/v1/audit/events',
      event('model.loaded', { modelSha256: sha, name: 'm', keyProvider: 'tpm' }),
    );
    assert.equal(r.status, 403);
  });

  it("a device's journal carrying a control-plane type is refused whole, and nothing of it is logged", async () => {
    const device = await fleet.deviceCredential();
    const key = createPrivateKey(device.key);
    const journal = await Journal.open(join(dataDir, `${device.deviceId}.journal`), journalSignerFromKey(key), key);
    const own = (type: 'model.loaded' | 'device.approved'): AuditEvent =>
      (type === 'model.loaded'
        ? {
            ...event(type, { modelSha256: sha, name: 'm', keyProvider: 'tpm' }),
            actor: { kind: 'device', id: device.deviceId },
          }
        : {
            ...event(type, { deviceId: device.deviceId, approvedBy: 'admin-1' }),
            actor: { kind: 'device', id: device.deviceId },
          }) as AuditEvent;
    const entries = await journal.append([own('model.loaded'), own('device.approved')]);
    const c = fleet.client(device);
    const r = await c.send<{ error: { code: string; message: string } }>('POST', '/v1/audit/journal', {
      records: entries.map((e) => encodeJournalRecord(e).subarray(4).toString('base64')),
    });
    assert.equal(r.status, 403, JSON.stringify(r.body));
    assert.equal(r.body.error.code, 'EG_FORBIDDEN');
    assert.match(r.body.error.message, /device\.approved/);
    const head = await c.send<{ seq: number }>('GET', '/v1/audit/journal/head');
    assert.equal(head.body.seq, -1, 'the batch was refused whole: not even its first, lawful record is logged');
  });
});
