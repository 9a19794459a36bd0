/**
 * Rollouts through the director's routes, real mTLS: a canary share of a group, signed version
 * reports (nonce-bound: a replay or another key is refused), `release status`, and a canary that
 * halts itself when more devices fail than it allows (an audit event), its devices falling back
 * to the release assigned before it. On SQLite and PostgreSQL.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeLogLeaf, type AuditLog } from '../../src/audit/index.ts';
import { b64url, generateSigningKey, publicKeyId, type SigningKeyPair } from '../../src/crypto/index.ts';
import {
  ReportNonce,
  VERSION_REPORT_TYPE,
  reportInstalledVersion,
  signVersionReport,
  type Assignment,
  type FleetClient,
  type ReleaseStatusResponse,
} from '../../src/fleet/index.ts';
import { addRelease, initRepository, publishRepository } from '../../src/release/index.ts';
import { controlPlanePlugins, type DirectorServerPlugin } from '../../src/server/index.ts';
import { packBytes } from '../helpers/packages.ts';
import { createTempDatabase, type TempDatabase } from '../helpers/postgres.ts';
import { writeKeys } from '../helpers/workspace.ts';
import { startTestFleet, type TestFleet } from './fleet-helpers.ts';

interface TestDevice {
  id: string;
  client: FleetClient;
  signer: SigningKeyPair;
}

for (const backend of ['sqlite', 'postgres'] as const) {
  describe(`release rollouts through the director (${backend})`, () => {
    let fleet: TestFleet;
    let pgDb: TempDatabase | undefined;
    let work: string;
    let admin: FleetClient;
    let devices: TestDevice[];
    let director: DirectorServerPlugin;
    let auditLog: () => AuditLog;
    let contentKey: string;

    async function events() {
      const log = auditLog();
      const leaves = await log.getEntries(0, (await log.publishCheckpoint()).size);
      return leaves.map((l) => decodeLogLeaf(Buffer.from(l, 'utf8')).event);
    }

    const report = (d: TestDevice, version: number, status: 'installed' | 'failed', detail?: string) =>
      reportInstalledVersion(d.client, d.signer, {
        deviceId: d.id,
        release: 'mnist',
        version,
        status,
        ...(detail ? { detail } : {}),
      });

    before(async () => {
      work = mkdtempSync(join(tmpdir(), 'eg-rollout-'));
      const dataDir = join(work, 'data');
      const releases = join(dataDir, 'releases');
      await initRepository({ dir: releases });
      const keys = await writeKeys(work);
      contentKey = b64url(keys.contentKey.bytes);
      for (const version of [3, 4]) {
        const pkg = await packBytes(work, Buffer.alloc(5000, version), keys, { name: 'mnist', version, file: 'mnist' });
        await addRelease({ dir: releases, packagePath: pkg.packagePath, version });
      }
      await publishRepository(releases);
      const controlPlane = controlPlanePlugins({ dataDir });
      director = controlPlane.director;
      auditLog = () => controlPlane.audit.log!;
      pgDb = backend === 'postgres' ? await createTempDatabase() : undefined;
      fleet = await startTestFleet({ dataDir, plugins: controlPlane.all, ...(pgDb ? { dbUrl: pgDb.url } : {}) });
      admin = fleet.client(await fleet.adminCredential());
      devices = [];
      for (let i = 0; i < 4; i++) {
        const cred = await fleet.deviceCredential();
        const privateKey = createPrivateKey(cred.key);
        const publicKey = createPublicKey(privateKey);
        const signer: SigningKeyPair = {
          algorithm: 'ecdsa-p256',
          privateKey,
          publicKey,
          keyId: publicKeyId(publicKey),
        };
        devices.push({ id: cred.deviceId, client: fleet.client(cred), signer });
        await admin.call('PUT', `/v1/attestation/groups/cameras/devices/${cred.deviceId}`);
      }
    });

    after(async () => {
      await fleet?.stop();
      await pgDb?.drop();
      if (work) rmSync(work, { recursive: true, force: true });
    });

    test('a canary goes to its share of the group; reports are signed, nonce-bound and show in status', async () => {
      const all = await admin.call<Assignment>('POST', '/v1/releases/assignments', {
        release: 'mnist',
        version: 3,
        group: 'cameras',
        contentKey,
      });
      assert.equal(all.body.canaryDevices, undefined);
      const canary = await admin.call<Assignment>('POST', '/v1/releases/assignments', {
        release: 'mnist',
        version: 4,
        group: 'cameras',
        canaryPercent: 50,
        maxFailures: 1,
        contentKey,
      });
      const members = canary.body.canaryDevices!;
      assert.equal(members.length, 2);
      // The content key is at rest only sealed: 32 bytes of enc, 32 of key, 16 of tag; never the key itself.
      const stored = await fleet.server.ctx.store.db
        .withTables<{ release_content_keys: { release_name: string; version: number; sealed: string } }>()
        .selectFrom('release_content_keys')
        .select(['version', 'sealed'])
        .where('release_name', '=', 'mnist')
        .execute();
      assert.deepEqual(stored.map((r) => Number(r.version)).sort(), [3, 4]);
      for (const r of stored) {
        assert.equal(Buffer.from(r.sealed, 'base64url').length, 80);
        assert.ok(!Buffer.from(r.sealed, 'base64url').includes(Buffer.from(contentKey, 'base64url')));
      }
      for (const d of devices) {
        const effective = await director.director!.effectiveAssignments(d.id);
        assert.deepEqual(
          effective.map((a) => Number(a.version)),
          [members.includes(d.id) ? 4 : 3],
          d.id,
        );
      }

      const member = devices.find((d) => members.includes(d.id))!;
      await report(member, 4, 'installed');
      // The same envelope again (its nonce is spent), and a report signed by a key other than the certificate's.
      const n = ReportNonce.parse((await member.client.call('POST', '/v1/director/nonce', {})).body);
      const body = {
        type: VERSION_REPORT_TYPE,
        deviceId: member.id,
        nonce: n.nonce,
        release: 'mnist',
        version: 4,
        status: 'installed',
        time: new Date().toISOString(),
      } as const;
      assert.equal(
        (
          await member.client.send('POST', '/v1/director/reports', {
            envelope: signVersionReport(body, generateSigningKey()),
          })
        ).status,
        400,
      );
      const envelope = signVersionReport(body, member.signer);
      assert.equal((await member.client.send('POST', '/v1/director/reports', { envelope })).status, 200);
      assert.equal((await member.client.send('POST', '/v1/director/reports', { envelope })).status, 403);

      const status = (await admin.call<ReleaseStatusResponse>('GET', '/v1/releases/status?release=mnist')).body;
      const row = status.devices.find((d) => d.deviceId === member.id)!;
      assert.deepEqual(
        { assigned: row.assigned?.version, installed: row.installed, failures: row.failures },
        { assigned: 4, installed: 4, failures: 0 },
      );
      const installed = (await events()).find((e) => e.type === 'release.installed' && e.subject === member.id);
      assert.deepEqual(installed?.details, { releaseId: 'mnist@4', deviceId: member.id, version: '4' });
    });

    test('a canary with more failures than it allows halts itself; its devices fall back to the release before', async () => {
      const status = (await admin.call<ReleaseStatusResponse>('GET', '/v1/releases/status')).body;
      const canary = status.assignments.find((a) => a.version === 4)!;
      const [first, second] = devices.filter((d) => canary.canaryDevices!.includes(d.id));
      const outsider = devices.find((d) => !canary.canaryDevices!.includes(d.id))!;
      // A device outside the canary failing version 4 is not the canary's failure.
      await report(outsider, 4, 'failed', 'smoke test: expected 7, got 1');
      await report(first!, 4, 'failed', 'smoke test: expected 7, got 1');
      let now = (await admin.call<ReleaseStatusResponse>('GET', '/v1/releases/status')).body;
      assert.equal(now.assignments.find((a) => a.id === canary.id)!.state, 'active');
      await report(second!, 4, 'failed', 'ONNX Runtime refused the model');
      now = (await admin.call<ReleaseStatusResponse>('GET', '/v1/releases/status')).body;
      const halted = now.assignments.find((a) => a.id === canary.id)!;
      assert.equal(halted.state, 'halted');
      assert.match(halted.haltReason!, /^2 devices reported a failed install \(more than 1\)/);
      for (const d of [first!, second!]) {
        const effective = await director.director!.effectiveAssignments(d.id);
        assert.deepEqual(
          effective.map((a) => Number(a.version)),
          [3],
        );
      }
      const halt = (await events()).find(
        (e) => e.type === 'admin.action' && (e.details as { action: string }).action === 'release.halt',
      );
      assert.equal((halt?.details as { target: string }).target, canary.id);
      assert.equal(halt?.actor.kind, 'server');
      const failedRow = now.devices.find((d) => d.deviceId === second!.id)!;
      assert.equal(failedRow.lastReport?.status, 'failed');
      assert.equal(failedRow.failures, 1);
    });
  });
}
