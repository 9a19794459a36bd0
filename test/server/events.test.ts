/**
 * Every security-relevant route of the control plane emits its event into the Merkle log (proved by
 * an inclusion proof against a signed checkpoint), on SQLite and PostgreSQL; and when the log store
 * refuses writes, the failure shows as a status code, an error log line and a metric.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import {
  decodeLogLeaf,
  hashLeaf,
  openCheckpoint,
  verifyInclusion,
  type AuditEvent,
  type AuditLog,
} from '../../src/audit/index.ts';
import { createCsr, generateP256, normalizeSerial, x509 } from '../../src/pki/index.ts';
import { auditServerPlugin } from '../../src/server/routes/audit.ts';
import type { protocol } from '../../src/attest/index.ts';
import { createTempDatabase, type TempDatabase } from '../helpers/postgres.ts';
import { failureCount, refuseAuditWrites } from '../helpers/audit-down.ts';
import { startTestFleet, type TestFleet } from './fleet-helpers.ts';

type ErrBody = { error: { code: string; message: string } };

/** The one entry of `type` about `subject` in the log, proved against a freshly signed checkpoint. */
async function provenEvent(log: AuditLog, type: AuditEvent['type'], subject?: string): Promise<AuditEvent> {
  const cp = await log.publishCheckpoint();
  const opened = openCheckpoint(cp.note, log.verifier, log.origin);
  const leaves = await log.getEntries(0, cp.size);
  const matches = leaves
    .map((leaf, index) => ({ index, leaf: decodeLogLeaf(Buffer.from(leaf, 'utf8')) }))
    .filter((l) => l.leaf.event.type === type && (subject === undefined || l.leaf.event.subject === subject));
  assert.equal(matches.length, 1, `one ${type} event for ${subject ?? 'anyone'} in the log`);
  const { index, leaf } = matches[0]!;
  const p = await log.inclusionProof(index, cp.size);
  assert.ok(verifyInclusion(p.leafHash, index, cp.size, p.proof, opened.checkpoint.rootHash));
  assert.ok(p.leafHash.equals(hashLeaf(Buffer.from(leaves[index]!, 'utf8'))));
  assert.equal(leaf.origin.kind, 'server');
  return leaf.event;
}

async function softwareEnrollment(fleet: TestFleet, label: string) {
  const c = fleet.client();
  const keys = await generateP256();
  const nonce = (await c.call<protocol.NonceResponse>('POST', '/v1/enroll/nonce')).body.nonce;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${label}`,
    keys,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    attributes: [new x509.ChallengePasswordAttribute(nonce)],
  });
  return c.send<protocol.EnrollFinished & ErrBody>('POST', '/v1/enroll/start', {
    keyProvider: 'software',
    nonce,
    csr: csr.toString('pem'),
  });
}

for (const backend of ['sqlite', 'postgres'] as const) {
  describe(`security events in the Merkle log on ${backend}`, () => {
    let fleet: TestFleet;
    let log: AuditLog;
    let admin: { cert: string; key: string };
    let pgDb: TempDatabase | undefined;
    const lines: Array<Record<string, unknown>> = [];

    before(async () => {
      const dataDir = mkdtempSync(join(tmpdir(), 'eg-events-'));
      pgDb = backend === 'postgres' ? await createTempDatabase() : undefined;
      const sink = new Writable({
        write(chunk: Buffer, _enc, done) {
          for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) lines.push(JSON.parse(line));
          done();
        },
      });
      const plugin = auditServerPlugin({ dataDir, checkpointIntervalMs: 0 });
      fleet = await startTestFleet({
        dataDir,
        ...(pgDb ? { dbUrl: pgDb.url } : {}),
        plugins: [plugin],
        logger: pino({ level: 'info' }, sink),
        policy: { allowSoftwareDevices: true },
      });
      log = plugin.log!;
      admin = await fleet.adminCredential();
    });
    after(async () => {
      await fleet.stop();
      await pgDb?.drop();
      rmSync(fleet.dataDir, { recursive: true, force: true });
    });

    it('approve: device.approved', async () => {
      const device = await fleet.deviceCredential({ status: 'pending' });
      const r = await fleet.client(admin).send('POST', `/v1/devices/${device.deviceId}/approve`);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const event = await provenEvent(log, 'device.approved', device.deviceId);
      assert.deepEqual(event.details, { deviceId: device.deviceId, approvedBy: 'test-admin' });
      assert.deepEqual(event.actor, { kind: 'admin', id: 'test-admin' });
    });

    it('revoke: device.revoked with the revoked serials', async () => {
      const device = await fleet.deviceCredential();
      const r = await fleet
        .client(admin)
        .send<{ revokedSerials: string[] }>('POST', `/v1/devices/${device.deviceId}/revoke`, {
          reason: 'keyCompromise',
        });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const event = await provenEvent(log, 'device.revoked', device.deviceId);
      assert.deepEqual(event.details, {
        deviceId: device.deviceId,
        reason: 'keyCompromise',
        revokedSerials: r.body.revokedSerials,
      });
    });

    it('a device certificate issued after approval: cert.issued', async () => {
      const r = await softwareEnrollment(fleet, 'first-certificate');
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const a = fleet.client(admin);
      assert.equal((await a.send('POST', `/v1/devices/${r.body.deviceId}/approve`)).status, 200);
      const cert = await fleet
        .client()
        .send<{ notAfter: string }>('GET', `/v1/enroll/${r.body.deviceId}/certificate`, undefined, {
          'x-edgeguard-poll-token': r.body.pollToken,
        });
      assert.equal(cert.status, 200, JSON.stringify(cert.body));
      const event = await provenEvent(log, 'cert.issued', r.body.deviceId);
      assert.ok(event.type === 'cert.issued');
      assert.equal(event.details.role, 'device');
      assert.equal(event.details.notAfter, cert.body.notAfter);
    });

    it('renew: cert.issued for the new certificate', async () => {
      const device = await fleet.deviceCredential();
      const r = await fleet
        .client(device)
        .send<{ certificateChain: string; notAfter: string }>('POST', '/v1/device/renew', {
          csr: await createCsr(device.keys, device.deviceId),
        });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const serial = new x509.X509Certificate(r.body.certificateChain.split(/(?<=-----END CERTIFICATE-----)/)[0]!)
        .serialNumber;
      const event = await provenEvent(log, 'cert.issued', device.deviceId);
      assert.ok(event.type === 'cert.issued');
      assert.equal(event.details.serial.toLowerCase().replace(/^0+/, ''), serial.toLowerCase().replace(/^0+/, ''));
      assert.equal(event.details.notAfter, r.body.notAfter);
      assert.deepEqual(event.actor, { kind: 'device', id: device.deviceId });
    });

    it('enrollment: device.enrollment_requested; refused steps: a metric and one enroll.failures summary, not an entry each', async () => {
      const r = await softwareEnrollment(fleet, 'enrolling');
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const event = await provenEvent(log, 'device.enrollment_requested', r.body.deviceId);
      assert.ok(event.type === 'device.enrollment_requested');
      assert.equal(event.details.keyProvider, 'software');
      await fleet.server.ctx.enrollFailures.flush();
      const before = await log.size();
      const stale = { challengeId: 'ab'.repeat(16), credential: Buffer.alloc(32).toString('base64') };
      for (let i = 0; i < 5; i++) {
        const refused = await fleet.client().send<ErrBody>('POST', '/v1/enroll/finish', stale);
        assert.equal(refused.status, 403, JSON.stringify(refused.body));
      }
      assert.equal((await fleet.client().send('POST', '/v1/enroll/start', { nonce: 'x' })).status, 400);
      assert.equal(await log.size(), before, 'anonymous failures wrote no entry of their own');
      const metric = await fleet.server.ctx.registry.getSingleMetricAsString('edgeguard_enrollment_failures_total');
      assert.match(metric, /stage="finish",reason="challenge"\} 5/);
      await fleet.server.ctx.enrollFailures.flush();
      await fleet.server.ctx.enrollFailures.flush();
      const summaries = (await log.getEntries(before, await log.size())).map(
        (l) => decodeLogLeaf(Buffer.from(l, 'utf8')).event,
      );
      assert.equal(summaries.length, 1);
      const summary = summaries[0]!;
      assert.ok(summary.type === 'enroll.failures');
      assert.equal(summary.details.total, 6);
      assert.deepEqual(summary.details.byReason, [
        { reason: 'finish:challenge', count: 5 },
        { reason: 'start:EG_BAD_REQUEST', count: 1 },
      ]);
      assert.deepEqual(summary.details.byAddress, [{ address: '127.0.0.1', count: 6 }]);
    });

    it('certificate revocation and device removal: admin.action', async () => {
      const device = await fleet.deviceCredential();
      const a = fleet.client(admin);
      const r = await a.send('POST', `/v1/certificates/${device.serial}/revoke`, { reason: 'keyCompromise' });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const revoked = await provenEvent(log, 'admin.action', normalizeSerial(device.serial));
      assert.deepEqual(revoked.details, {
        action: 'revoke certificate',
        target: normalizeSerial(device.serial),
        detail: 'device certificate, keyCompromise',
      });
      assert.equal((await a.send('POST', `/v1/devices/${device.deviceId}/revoke`)).status, 200);
      assert.equal((await a.send('DELETE', `/v1/devices/${device.deviceId}`)).status, 200);
      const removed = (await log.getEntries(0, await log.size()))
        .map((l) => decodeLogLeaf(Buffer.from(l, 'utf8')).event)
        .filter((e) => e.type === 'admin.action' && e.subject === device.deviceId);
      assert.deepEqual(
        removed.map((e) => e.type === 'admin.action' && e.details.action),
        ['remove device'],
      );
    });

    it('an approval refused to a device certificate: admin.action, denied', async () => {
      const device = await fleet.deviceCredential();
      const target = await fleet.deviceCredential({ status: 'pending' });
      const r = await fleet.client(device).send('POST', `/v1/devices/${target.deviceId}/approve`);
      assert.equal(r.status, 403);
      const event = await provenEvent(log, 'admin.action', target.deviceId);
      assert.equal(event.outcome, 'denied');
      assert.deepEqual(event.details, { action: 'approve device', target: target.deviceId, detail: 'HTTP 403' });
    });

    it('when the log store refuses writes: 503 EG_AUDIT_UNAVAILABLE or a counted error, never silence', async () => {
      const db = fleet.server.ctx.store.db;
      await refuseAuditWrites(backend, db, true);
      try {
        const failuresBefore = await failureCount(fleet, 'device.approved');
        const device = await fleet.deviceCredential({ status: 'pending' });
        const r = await fleet.client(admin).send<ErrBody>('POST', `/v1/devices/${device.deviceId}/approve`);
        assert.equal(r.status, 503);
        assert.equal(r.body.error.code, 'EG_AUDIT_UNAVAILABLE');
        assert.match(r.body.error.message, /device\.approved event could not be written/);
        assert.equal(await failureCount(fleet, 'device.approved'), failuresBefore + 1);
        const line = lines.find(
          (l) => l.level === 50 && /audit event device\.approved could not be appended/.test(String(l.msg)),
        );
        assert.ok(line, 'an error line names the lost event');
        assert.equal((line.event as AuditEvent).subject, device.deviceId);
        assert.equal(line.policy, 'fail-request');
        // Enrollment goes on (its device row is the record), and the lost event is counted.
        const enrolled = await softwareEnrollment(fleet, 'while-down');
        assert.equal(enrolled.status, 200, JSON.stringify(enrolled.body));
        assert.equal(await failureCount(fleet, 'device.enrollment_requested'), 1);
      } finally {
        await refuseAuditWrites(backend, db, false);
      }
      // Once the store takes writes again, so does the log.
      const device = await fleet.deviceCredential({ status: 'pending' });
      const r = await fleet.client(admin).send('POST', `/v1/devices/${device.deviceId}/approve`);
      assert.equal(r.status, 200);
      await provenEvent(log, 'device.approved', device.deviceId);
    });
  });
}
