/**
 * Device checklist reports on the control plane, on SQLite and PostgreSQL: a device uploads its
 * report signed with its certificate key (`edgeguard checklist --upload`); the server checks the
 * signature against that certificate and the report's own arithmetic, keeps the latest per device
 * and logs the envelope's digest; `edgeguard checklist --fleet` lists every device's score and
 * failing items. Forged, foreign, inflated and anonymous uploads are refused with typed codes.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createPrivateKey, createPublicKey } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import YAML from 'yaml';
import {
  buildReport,
  signReport,
  verifySignedReport,
  type CheckResult,
  type ChecklistReport,
} from '../../src/checklist/index.ts';
import { publicKeyId, signingAlgorithmOf, type SigningKeyPair } from '../../src/crypto/index.ts';
import { controlPlanePlugins } from '../../src/server/index.ts';
import { runCli } from '../helpers/cli.ts';
import { createTempDatabase, type TempDatabase } from '../helpers/postgres.ts';
import { eventually } from '../helpers/wait.ts';
import { makeDemoDevice } from '../checklist/demo-device.ts';
import { startTestFleet, type TestFleet } from './fleet-helpers.ts';

const result = (id: string, status: CheckResult['status']): CheckResult => ({
  id,
  title: `item ${id}`,
  audit: 'what was looked at',
  status,
  actual: status === 'FAIL' ? 'broken' : 'fine',
  expected: 'fine',
  evidence: [{ name: 'probe', value: id }],
  remediation: 'fix it',
});

function reportWith(fail: string[]): ChecklistReport {
  const ids = Array.from({ length: 10 }, (_, i) => `EG-${String(i + 1).padStart(2, '0')}`);
  return buildReport(
    ids.map((id) => result(id, fail.includes(id) ? 'FAIL' : 'PASS')),
    { posture: 'software' },
  );
}

function signerOf(keyPem: string): SigningKeyPair {
  const privateKey = createPrivateKey(keyPem);
  const publicKey = createPublicKey(privateKey);
  return { algorithm: signingAlgorithmOf(privateKey), privateKey, publicKey, keyId: publicKeyId(publicKey) };
}

for (const backend of ['sqlite', 'postgres'] as const)
  describe(`checklist reports on the control plane (${backend})`, () => {
    let fleet: TestFleet;
    let pg: TempDatabase | undefined;
    let dataDir: string;

    before(async () => {
      dataDir = await mkdtemp(join(tmpdir(), 'eg-checklist-cp-'));
      pg = backend === 'postgres' ? await createTempDatabase() : undefined;
      const controlPlane = controlPlanePlugins({ dataDir, checkpointIntervalMs: 100 });
      fleet = await startTestFleet({ dataDir, ...(pg ? { dbUrl: pg.url } : {}), plugins: controlPlane.all });
    });
    after(async () => {
      await fleet.stop();
      await pg?.drop();
      await rm(dataDir, { recursive: true, force: true });
    });

    test('a signed upload is kept, logged by digest, and listed; the latest one wins', async () => {
      const device = await fleet.deviceCredential();
      const c = fleet.client(device);
      const first = signReport(reportWith(['EG-03', 'EG-07']), signerOf(device.key));
      const r1 = await c.send<{ score: number; failing: string[]; envelopeSha256: string }>(
        'POST',
        '/v1/checklist/reports',
        first,
      );
      assert.equal(r1.status, 200, JSON.stringify(r1.body));
      assert.deepEqual([r1.body.score, r1.body.failing], [80, ['EG-03', 'EG-07']]);
      assert.equal(r1.body.envelopeSha256, createHash('sha256').update(JSON.stringify(first)).digest('hex'));
      const second = signReport(reportWith(['EG-07']), signerOf(device.key));
      const r2 = await c.send<{ envelopeSha256: string }>('POST', '/v1/checklist/reports', second);
      assert.equal(r2.status, 200);

      const admin = fleet.client(await fleet.adminCredential());
      const list = await admin.send<{
        devices: Array<{ deviceId: string; report?: { score: number; failing: string[] } }>;
      }>('GET', '/v1/checklist/reports');
      assert.equal(list.status, 200);
      const mine = list.body.devices.find((d) => d.deviceId === device.deviceId)!;
      assert.deepEqual([mine.report?.score, mine.report?.failing], [90, ['EG-07']]);
      const stored = await admin.send<{ envelope: unknown; envelopeSha256: string; report: { score: number } }>(
        'GET',
        `/v1/devices/${device.deviceId}/checklist`,
      );
      assert.equal(stored.status, 200);
      assert.equal(stored.body.envelopeSha256, r2.body.envelopeSha256);
      // The stored envelope is the evidence: it verifies again under the device's key.
      assert.equal(
        verifySignedReport(JSON.stringify(stored.body.envelope), createPublicKey(createPrivateKey(device.key))).score,
        90,
      );

      // Both uploads are in the audit log, each with the digest of what was stored.
      const logged = await eventually('both uploads in the audit log', async () => {
        const entries = await admin.send<{
          entries: Array<{ event: { type: string; details: { envelopeSha256: string } } }>;
        }>('GET', `/v1/audit/entries?type=checklist.reported&device=${device.deviceId}`);
        const digests = entries.body.entries.map((e) => e.event.details.envelopeSha256);
        return digests.length === 2 ? digests : undefined;
      });
      assert.deepEqual(logged, [r1.body.envelopeSha256, r2.body.envelopeSha256]);
    });

    test('forged, foreign, inflated, malformed and anonymous uploads are refused', async () => {
      const device = await fleet.deviceCredential();
      const other = await fleet.deviceCredential();
      const c = fleet.client(device);
      const refuse = async (body: unknown, status: number, code: string) => {
        const r = await c.send<{ error: { code: string } }>('POST', '/v1/checklist/reports', body);
        assert.equal(r.status, status, JSON.stringify(r.body));
        assert.equal(r.body.error.code, code);
      };
      // Signed by another device's key.
      await refuse(signReport(reportWith([]), signerOf(other.key)), 400, 'EG_BAD_REQUEST');
      // The payload changed after signing.
      const env = signReport(reportWith(['EG-01']), signerOf(device.key));
      const edited = { ...env, payload: Buffer.from(JSON.stringify(reportWith([]))).toString('base64') };
      await refuse(edited, 400, 'EG_BAD_REQUEST');
      // A properly signed report whose score is not what its items earn.
      const inflated = { ...reportWith(['EG-01', 'EG-02']), score: 100 };
      await refuse(signReport(inflated, signerOf(device.key)), 400, 'EG_BAD_REQUEST');
      // Not an envelope at all.
      await refuse({ report: 'hello' }, 400, 'EG_BAD_REQUEST');
      // Anonymous, and an admin (the upload is a device's own).
      const anon = await fleet.client().send<{ error: { code: string } }>('POST', '/v1/checklist/reports', env);
      assert.equal(anon.status, 401);
      const admin = fleet.client(await fleet.adminCredential());
      assert.equal((await admin.send('POST', '/v1/checklist/reports', env)).status, 403);
      // A device may not read the fleet's reports.
      assert.equal((await c.send('GET', '/v1/checklist/reports')).status, 403);
      assert.equal((await admin.send('GET', `/v1/devices/${device.deviceId}/checklist`)).status, 404);
    });

    if (backend === 'sqlite')
      test('edgeguard checklist --upload on a device, then --fleet for the operator', async () => {
        const work = await mkdtemp(join(tmpdir(), 'eg-checklist-cli-'));
        try {
          const device = await makeDemoDevice(join(work, 'device'));
          const cred = await fleet.deviceCredential();
          await writeFile(join(device.dir, 'device.crt'), cred.cert);
          await writeFile(join(device.dir, 'device.key'), cred.key, { mode: 0o600 });
          await writeFile(join(device.dir, 'fleet-ca.pem'), fleet.ca.rootPem);
          const yaml = YAML.parse(await readFile(device.configPath, 'utf8')) as { upload: { server: string } };
          yaml.upload.server = fleet.server.url;
          await writeFile(device.configPath, YAML.stringify(yaml));
          const up = await runCli([
            'checklist',
            '--device',
            device.deviceDir,
            '--config',
            device.configPath,
            '--root',
            device.root,
            '--upload',
            '--json',
          ]);
          assert.equal(up.code, 0, up.stderr + up.stdout);
          const uploaded = JSON.parse(up.stdout) as { ok: boolean; score: number; failing: string[] };
          assert.equal(uploaded.ok, true);

          const admin = await fleet.adminCredential();
          await writeFile(join(work, 'admin.crt'), admin.cert);
          await writeFile(join(work, 'admin.key'), admin.key, { mode: 0o600 });
          await writeFile(join(work, 'ca.pem'), fleet.ca.rootPem);
          const conn = ['--server', fleet.server.url, '--ca', join(work, 'ca.pem')];
          const creds = ['--client-cert', join(work, 'admin.crt'), '--client-key', join(work, 'admin.key')];
          const listed = await runCli(['checklist', '--fleet', ...conn, ...creds, '--json']);
          assert.equal(listed.code, 0, listed.stderr);
          const fleetView = JSON.parse(listed.stdout) as {
            devices: Array<{ deviceId: string; report?: { score: number; failing: string[] } }>;
          };
          const mine = fleetView.devices.find((d) => d.deviceId === cred.deviceId)!;
          assert.deepEqual([mine.report?.score, mine.report?.failing], [uploaded.score, uploaded.failing]);
          const text = await runCli(['checklist', '--fleet', ...conn, ...creds, '--exit-code', '3']);
          assert.equal(text.code, uploaded.failing.length > 0 ? 3 : 0, text.stderr);
          assert.match(text.stdout, new RegExp(`${cred.deviceId} .* score +${uploaded.score}`));
          const noCreds = await runCli(['checklist', '--fleet', ...conn]);
          assert.notEqual(noCreds.code, 0);
          assert.match(noCreds.stderr, /EG_USAGE/);
        } finally {
          await rm(work, { recursive: true, force: true });
        }
      });
  });
