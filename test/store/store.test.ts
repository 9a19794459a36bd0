import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { Store, migrationNames, type NewDevice } from '../../src/store/index.ts';
import { isEdgeguardError } from '../../src/errors/index.ts';
import { BACKENDS } from '../helpers/stores.ts';

function device(over: Partial<NewDevice> = {}): NewDevice {
  return {
    id: `dev-${randomBytes(4).toString('hex')}`,
    ek_pub_sha256: randomBytes(32).toString('hex'),
    ek_cert_pem: null,
    ak_public: randomBytes(20).toString('base64'),
    ak_name: '000b' + randomBytes(32).toString('hex'),
    binding_public: randomBytes(20).toString('base64'),
    key_provider: 'tpm',
    status: 'pending',
    label: 'cam-1',
    csr_pem: '-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----',
    poll_token_sha256: randomBytes(32).toString('hex'),
    created_at: new Date().toISOString(),
    ...over,
  };
}

for (const backend of BACKENDS) {
  describe(`store on ${backend.name}`, () => {
    let store: Store;
    let cleanup: () => Promise<void>;
    let url: string | undefined;
    let dataDir: string;

    before(async () => {
      ({ store, cleanup, url, dataDir } = await backend.open());
    });
    after(async () => {
      await cleanup();
    });

    it('runs the one migration list in order, with no other module imported; reopening is idempotent', async () => {
      assert.deepEqual(migrationNames(), [
        'control-plane/0001_init',
        'audit/0001_log',
        'review/0001_items',
        'control-plane/0002_tampered',
        'attestation/0001_init',
        'checklist/0001_reports',
        'attestation/0002_quote_clock',
        'release/0001_director',
        'ui/0001_sessions',
      ]);
      // The audit and review tables exist although this test never imported src/audit or the server.
      const state = await sql<{ size: number | string }>`select size from audit_state where id = 1`.execute(store.db);
      assert.equal(Number(state.rows[0]?.size), 0);
      await sql`insert into review_items (id, device_id, key_id, created_ms, received_at, size, item)
        values (${'a'.repeat(32)}, ${'dev-1'}, ${'k1'}, ${1}, ${'2026-12-01T00:00:00.000Z'}, ${1}, ${'x'})`.execute(
        store.db,
      );
      // A server older than the list created review_items itself: the migration finds it and keeps it.
      await sql`delete from kysely_migration where name = ${'review/0001_items'}`.execute(store.db);
      const again = await Store.open(url !== undefined ? { url } : { dataDir });
      const items = await sql<{ id: string }>`select id from review_items`.execute(again.db);
      assert.deepEqual(
        items.rows.map((r) => r.id),
        ['a'.repeat(32)],
      );
      const applied = await sql<{ name: string }>`select name from kysely_migration order by name`.execute(again.db);
      assert.deepEqual(applied.rows.map((r) => r.name).sort(), [...migrationNames()].sort());
      await again.close();
    });

    it('opens a database migrated by a newer release with more migrations', async () => {
      // A migration this release does not know, recorded by a newer one.
      await sql`insert into kysely_migration (name, timestamp) values (${'zz-other-module/0001_x'}, ${new Date().toISOString()})`.execute(
        store.db,
      );
      const again = await Store.open(url !== undefined ? { url } : { dataDir });
      assert.equal(await again.getDevice('none'), undefined);
      await again.close();
    });

    it('inserts, reads and lists devices; refuses a second device with the same EK', async () => {
      const d = device();
      const rec = await store.insertDevice(d);
      assert.equal(rec.id, d.id);
      assert.equal(rec.status, 'pending');
      assert.equal(rec.approved_at, null);
      assert.deepEqual(await store.getDeviceByEk(d.ek_pub_sha256), rec);
      await assert.rejects(store.insertDevice(device({ ek_pub_sha256: d.ek_pub_sha256 })), (e) =>
        isEdgeguardError(e, 'EG_EXISTS'),
      );
      const pending = await store.listDevices({ status: 'pending' });
      assert.ok(pending.some((x) => x.id === d.id));
      assert.equal(await store.getDevice('no-such-device'), undefined);
    });

    it('approves only pending devices and revokes a device with all its certificates', async () => {
      const d = await store.insertDevice(device());
      const approved = await store.approveDevice(d.id, 'admin-1');
      assert.equal(approved?.status, 'approved');
      assert.equal(approved?.approved_by, 'admin-1');
      assert.equal(await store.approveDevice(d.id, 'admin-1'), undefined, 'approving twice does nothing');
      const serialA = randomBytes(8).toString('hex');
      const serialB = randomBytes(8).toString('hex');
      for (const serial of [serialA, serialB]) {
        await store.recordCertificate({
          serial,
          device_id: d.id,
          role: 'device',
          subject: `CN=${d.id}`,
          not_before: new Date().toISOString(),
          not_after: new Date(Date.now() + 1e9).toISOString(),
          pem: 'x',
        });
      }
      assert.equal(await store.certificateStatus(serialA), 'good');
      assert.equal(await store.certificateStatus('00ff'), 'unknown');
      const res = await store.revokeDevice(d.id);
      assert.equal(res?.device.status, 'revoked');
      assert.deepEqual(res?.revokedSerials.sort(), [serialA, serialB].sort());
      assert.equal(await store.certificateStatus(serialA), 'revoked');
      assert.equal(await store.certificateStatus(serialB), 'revoked');
      assert.equal(await store.revokeDevice(d.id), undefined, 'revoking twice does nothing');
      assert.equal(await store.approveDevice(d.id, 'x'), undefined, 'a revoked device cannot be approved');
      const live = await store.insertDevice(device());
      assert.equal(await store.deleteRevokedDevice(live.id), false, 'only revoked devices are removed');
      assert.equal(await store.deleteRevokedDevice(d.id), true);
      assert.equal(await store.getDevice(d.id), undefined);
      assert.equal(await store.certificateStatus(serialA), 'revoked', 'certificates stay revoked');
      const revoked = await store.revokedCertificates();
      assert.ok(revoked.some((r) => r.serial === serialA && r.revocation_reason === 'cessationOfOperation'));
    });

    it('marks a device tampered (keyCompromise on its certificates) once; then it is removable like a revoked one', async () => {
      const d = await store.insertDevice(device());
      await store.approveDevice(d.id, 'admin-1');
      const serial = randomBytes(8).toString('hex');
      await store.recordCertificate({
        serial,
        device_id: d.id,
        role: 'device',
        subject: `CN=${d.id}`,
        not_before: new Date().toISOString(),
        not_after: new Date(Date.now() + 1e9).toISOString(),
        pem: 'x',
      });
      const res = await store.markDeviceTampered(d.id);
      assert.equal(res?.device.status, 'tampered');
      assert.ok(res?.device.tampered_at);
      assert.deepEqual(res?.revokedSerials, [serial]);
      assert.equal(await store.markDeviceTampered(d.id), undefined, 'twice does nothing');
      assert.equal(await store.revokeDevice(d.id), undefined, 'a tampered device is already out of service');
      const auth = await store.authLookup(serial);
      assert.deepEqual([auth.status, auth.device?.status], ['revoked', 'tampered']);
      const revoked = await store.revokedCertificates();
      assert.ok(revoked.some((r) => r.serial === serial && r.revocation_reason === 'keyCompromise'));
      assert.deepEqual(
        (await store.listDevices({ status: 'tampered' })).map((x) => x.id),
        [d.id],
      );
      assert.equal(await store.deleteRevokedDevice(d.id), true);
    });

    it('revokes a single certificate and finds the latest valid certificate of a device', async () => {
      const d = await store.insertDevice(device());
      const t = Date.now();
      await store.recordCertificate({
        serial: 'aa01',
        device_id: d.id,
        role: 'device',
        subject: 's',
        not_before: new Date(t).toISOString(),
        not_after: new Date(t + 1000e3).toISOString(),
        pem: 'old',
      });
      await store.recordCertificate({
        serial: 'aa02',
        device_id: d.id,
        role: 'device',
        subject: 's',
        not_before: new Date(t).toISOString(),
        not_after: new Date(t + 2000e3).toISOString(),
        pem: 'new',
      });
      assert.equal((await store.latestCertificateFor(d.id))?.pem, 'new');
      assert.equal(await store.revokeCertificate('aa02', 'keyCompromise'), true);
      assert.equal(await store.revokeCertificate('aa02'), false);
      assert.equal((await store.latestCertificateFor(d.id))?.pem, 'old');
      assert.equal((await store.getCertificate('aa02'))?.revocation_reason, 'keyCompromise');
    });

    it('looks up certificate state and the device record in one query', async () => {
      const d = await store.insertDevice(device());
      await store.recordCertificate({
        serial: 'bb01',
        device_id: d.id,
        role: 'device',
        subject: 's',
        not_before: new Date().toISOString(),
        not_after: new Date(Date.now() + 1e6).toISOString(),
        pem: 'p',
      });
      await store.recordCertificate({
        serial: 'bb02',
        device_id: null,
        role: 'admin',
        subject: 'a',
        not_before: new Date().toISOString(),
        not_after: new Date(Date.now() + 1e6).toISOString(),
        pem: 'p',
      });
      const dev = await store.authLookup('bb01');
      assert.equal(dev.status, 'good');
      assert.deepEqual(dev.device, await store.getDevice(d.id));
      const adm = await store.authLookup('bb02');
      assert.deepEqual(adm, { status: 'good', device: undefined });
      assert.deepEqual(await store.authLookup('bb03'), { status: 'unknown', device: undefined });
      await store.revokeCertificate('bb01');
      assert.equal((await store.authLookup('bb01')).status, 'revoked');
    });

    it('consumes a challenge exactly once, even when two consumers race', async () => {
      const id = randomBytes(16).toString('hex');
      await store.createChallenge({ id, kind: 'credential', value: 'v', payload: '{"a":1}', ttlSeconds: 60 });
      assert.equal(await store.consumeChallenge(id, 'nonce'), undefined, 'wrong kind is refused');
      const results = await Promise.all([
        store.consumeChallenge(id, 'credential'),
        store.consumeChallenge(id, 'credential'),
        store.consumeChallenge(id, 'credential'),
      ]);
      const winners = results.filter((r) => r !== undefined);
      assert.equal(winners.length, 1);
      assert.equal(winners[0]?.payload, '{"a":1}');
      assert.equal(await store.consumeChallenge(id, 'credential'), undefined, 'a replay is refused');
      assert.equal(await store.consumeChallenge('missing', 'credential'), undefined);
    });

    it('refuses an expired challenge and prunes old ones', async () => {
      const id = randomBytes(16).toString('hex');
      await store.createChallenge({ id, kind: 'nonce', value: 'n', ttlSeconds: -10 });
      assert.equal(await store.consumeChallenge(id, 'nonce'), undefined);
      const pruned = await store.pruneChallenges(0);
      assert.ok(pruned >= 1);
    });
  });
}
