/**
 * The release director end to end, on a real swtpm, real mTLS and the real attestation gate: an
 * unattested device is refused its director metadata (403 EG_ATTEST_REFUSED and an audit event);
 * once its played boot is quoted and passes, it fetches the metadata and the repository through
 * the mTLS fetcher, both agree, the package verifies, and the content key wrapped to its enrolled
 * binding key unwraps on its own TPM. A target the director did not assign is refused on the
 * device. On SQLite and PostgreSQL.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBootPolicy, formatBootPolicyYaml } from '../../src/attest/index.ts';
import { decodeLogLeaf, type AuditLog } from '../../src/audit/index.ts';
import { b64url, wipe } from '../../src/crypto/index.ts';
import { isEdgeguardError } from '../../src/errors/index.ts';
import { defaultSyntheticBoot, parseEventLog, playBoot, syntheticBootEvents } from '../../src/eventlog/index.ts';
import { pushAttestationEvidence, requestAttestationNonce, type FleetClient } from '../../src/fleet/index.ts';
import { initDevice, type KeyStore } from '../../src/keystore/index.ts';
import { verifyPackage } from '../../src/model/index.ts';
import {
  addRelease,
  fetchAssignedRelease,
  initRepository,
  provisionTrustedRoot,
  publishRepository,
  releasePaths,
  type FetchAssignedOptions,
} from '../../src/release/index.ts';
import { controlPlanePlugins } from '../../src/server/index.ts';
import { TPM_ALG, parsePcrSelection, parseTpm2bPublic, signPcrAuthorization } from '../../src/tpm/index.ts';
import { packBytes } from '../helpers/packages.ts';
import { createTempDatabase, type TempDatabase } from '../helpers/postgres.ts';
import { TPM_SKIP, startTestTpmWithAk, stopTestTpm, type TestTpmWithAk } from '../helpers/swtpm.ts';
import { writeKeys, type KeyFiles } from '../helpers/workspace.ts';
import { startTestFleet, type TestFleet } from './fleet-helpers.ts';

const BANKS = [TPM_ALG.SHA256];

async function writeAuthorization(dir: string, privateKey: KeyObject): Promise<string> {
  const selection = parsePcrSelection('sha256:4');
  const auth = signPcrAuthorization({ privateKey, selection, values: { sha256: { 4: Buffer.alloc(32, 4) } } });
  const path = join(dir, 'kernel-next.json');
  await writeFile(path, JSON.stringify(auth));
  return path;
}

for (const backend of ['sqlite', 'postgres'] as const) {
  describe(`release director on swtpm (${backend})`, { skip: TPM_SKIP }, () => {
    let tpm: TestTpmWithAk;
    let fleet: TestFleet;
    let pgDb: TempDatabase | undefined;
    let dataDir: string;
    let work: string;
    let keys: KeyFiles;
    let store: KeyStore;
    let goldenLog: Buffer;
    let admin: FleetClient;
    let device: { id: string; cert: string; key: string; client: FleetClient };
    let auditLog: () => AuditLog;
    let directorPem: string;
    let fetchOptions: FetchAssignedOptions;
    const operator = generateKeyPairSync('rsa', { modulusLength: 2048 });

    async function events() {
      const log = auditLog();
      const leaves = await log.getEntries(0, (await log.publishCheckpoint()).size);
      return leaves.map((l) => decodeLogLeaf(Buffer.from(l, 'utf8')).event);
    }

    async function attest() {
      const issued = await requestAttestationNonce(device.client);
      const q = await tpm.client.attestation.quote(tpm.keys.ak, issued.pcrs, Buffer.from(issued.nonce, 'hex'));
      return pushAttestationEvidence(device.client, issued.nonce, {
        quote: q.attest,
        signature: q.signature,
        eventLog: goldenLog,
      });
    }

    before(async () => {
      tpm = await startTestTpmWithAk();
      goldenLog = await playBoot(tpm.client, BANKS, syntheticBootEvents(defaultSyntheticBoot(), BANKS));
      work = mkdtempSync(join(tmpdir(), 'eg-director-'));
      dataDir = join(work, 'data');
      // The binding key is made after the boot: its PCR policy holds for the played boot.
      const made = await initDevice({ dir: join(work, 'device-keys'), tcti: tpm.tpm.tcti });
      store = made.store;
      const certify = JSON.parse(await readFile(join(made.dir, 'binding.certify.json'), 'utf8')) as {
        bindingPublic: string;
      };

      const releases = join(dataDir, 'releases');
      await initRepository({ dir: releases });
      keys = await writeKeys(work);
      for (const version of [3, 4]) {
        const pkg = await packBytes(work, Buffer.alloc(30000, version), keys, {
          name: 'mnist',
          version,
          file: 'mnist',
        });
        // Version 4 ships the operator's PCR authorization of the boot it brings.
        const pcrAuthorizationPaths = version === 4 ? [await writeAuthorization(work, operator.privateKey)] : [];
        await addRelease({ dir: releases, packagePath: pkg.packagePath, version, pcrAuthorizationPaths });
      }
      await publishRepository(releases);

      const controlPlane = controlPlanePlugins({ dataDir, attestation: { freshnessSeconds: 300 } });
      auditLog = () => controlPlane.audit.log!;
      pgDb = backend === 'postgres' ? await createTempDatabase() : undefined;
      fleet = await startTestFleet({ dataDir, plugins: controlPlane.all, ...(pgDb ? { dbUrl: pgDb.url } : {}) });
      admin = fleet.client(await fleet.adminCredential());
      const cred = await fleet.deviceCredential();
      // What enrollment records for a TPM device: its AK (TPMT_PUBLIC) and its certified binding key (TPM2B_PUBLIC).
      await fleet.server.ctx.store.db
        .updateTable('devices')
        .set({
          ak_public: Buffer.from(parseTpm2bPublic(tpm.keys.ak.public).tpmtBytes).toString('base64'),
          binding_public: certify.bindingPublic,
        })
        .where('id', '=', cred.deviceId)
        .execute();
      device = { id: cred.deviceId, cert: cred.cert, key: cred.key, client: fleet.client(cred) };
      const policy = formatBootPolicyYaml(createBootPolicy(parseEventLog(goldenLog)));
      await admin.call('POST', '/v1/attestation/policies', { policy, label: 'golden.yaml', device: device.id });
      const published = await admin.call<{ keys: Array<{ pem: string }> }>('GET', '/v1/director/keys');
      directorPem = published.body.keys[0]!.pem;

      const deviceDir = join(work, 'device');
      const metadataDir = join(deviceDir, 'tuf');
      await provisionTrustedRoot(metadataDir, await readFile(join(releasePaths(releases).metadata, '1.root.json')));
      fetchOptions = {
        server: fleet.server.url,
        ca: fleet.ca.rootPem,
        cert: device.cert,
        key: device.key,
        deviceId: device.id,
        metadataDir,
        downloadDir: join(deviceDir, 'download'),
        publisherKeys: [keys.signer.publicKey],
        directorKeys: [createPublicKey(directorPem)],
        minimumVersion: 0,
      };
    });

    after(async () => {
      await fleet?.stop();
      await pgDb?.drop();
      await stopTestTpm(tpm?.tpm);
      if (work) rmSync(work, { recursive: true, force: true });
    });

    test('an assignment names a published release and needs the content key the package was made with', async () => {
      const wrong = await admin.send('POST', '/v1/releases/assignments', {
        release: 'mnist',
        version: 3,
        device: device.id,
        contentKey: b64url(Buffer.alloc(32, 1)),
      });
      assert.equal(wrong.status, 400);
      const missing = await admin.send('POST', '/v1/releases/assignments', {
        release: 'mnist',
        version: 3,
        device: device.id,
      });
      assert.equal(missing.status, 400);
      const unknown = await admin.send('POST', '/v1/releases/assignments', {
        release: 'mnist',
        version: 9,
        device: device.id,
        contentKey: b64url(keys.contentKey.bytes),
      });
      assert.equal(unknown.status, 404);
      const ok = await admin.call<{ state: string; targetPath: string }>('POST', '/v1/releases/assignments', {
        release: 'mnist',
        version: 3,
        device: device.id,
        contentKey: b64url(keys.contentKey.bytes),
      });
      assert.equal(ok.body.state, 'active');
      assert.equal(ok.body.targetPath, 'mnist/3/' + ok.body.targetPath.split('/')[2]);
    });

    test('an unattested device gets no director metadata: 403 EG_ATTEST_REFUSED, and the refusal is an audit event', async () => {
      const r = await device.client.send<{ error: { code: string } }>('GET', '/v1/director/targets.json');
      assert.equal(r.status, 403);
      assert.equal(r.body.error.code, 'EG_ATTEST_REFUSED');
      await assert.rejects(
        fetchAssignedRelease(fetchOptions),
        (e) => isEdgeguardError(e, 'EG_RELEASE_REFUSED') && e.details?.reason === 'attestation',
      );
      const refused = (await events()).find(
        (e) => e.type === 'release.rejected' && e.subject === device.id && e.outcome === 'denied',
      );
      assert.ok(refused, 'a release.rejected event for the refused device');
      assert.match(String((refused.details as { reason: string }).reason), /^attestation: NO_EVIDENCE/);
    });

    test('an attested device gets its release; both repositories agree; the key unwraps on its TPM', async () => {
      assert.equal((await attest()).pass, true);
      const got = await fetchAssignedRelease(fetchOptions);
      assert.ok(got);
      assert.deepEqual(
        { name: got.target.name, version: got.target.version, kind: got.target.kind },
        { name: 'mnist', version: 3, kind: 'model' },
      );
      const contentKey = await store.unwrapContentKey(got.wrappedKey);
      try {
        assert.equal(contentKey.kid, keys.contentKey.kid);
        const verified = await verifyPackage(got.target.path, {
          publicKeys: [keys.signer.publicKey],
          signaturePath: got.target.signaturePath,
          contentKey,
        });
        assert.equal(verified.chunksAuthenticated, true);
      } finally {
        wipe(contentKey.bytes);
      }
      // Each issue is a new, higher director version; the device remembers the last one.
      const again = await fetchAssignedRelease(fetchOptions);
      assert.ok(again && again.directorVersion > got.directorVersion);
    });

    test('a target the director did not assign is refused by the device, before any download', async () => {
      await attest();
      const published = (await admin.call<{ assignments: Array<{ targetPath: string }> }>('GET', '/v1/releases/status'))
        .body;
      const assigned = published.assignments[0]!.targetPath;
      const other = assigned.replace('mnist/3/', 'mnist/4/');
      await assert.rejects(
        fetchAssignedRelease({ ...fetchOptions, path: other }),
        (e) => isEdgeguardError(e, 'EG_RELEASE_REFUSED') && e.details?.reason === 'not-assigned',
      );
      // Director metadata signed by a key the device does not pin is refused.
      const { publicKey } = generateKeyPairSync('ed25519');
      await assert.rejects(
        fetchAssignedRelease({ ...fetchOptions, directorKeys: [publicKey] }),
        (e) => isEdgeguardError(e, 'EG_RELEASE_REFUSED') && e.details?.reason === 'signature',
      );
      // A damaged record of the last accepted director version fails closed, typed.
      const state = join(fetchOptions.metadataDir, 'director.json');
      const kept = await readFile(state);
      await writeFile(state, '{"version":');
      await assert.rejects(
        fetchAssignedRelease(fetchOptions),
        (e) => isEdgeguardError(e, 'EG_RELEASE_REFUSED') && e.details?.reason === 'malformed',
      );
      await writeFile(state, kept);
    });

    test('a release with a PCR authorization: the device gets it checked against its PCR policy key', async () => {
      await admin.call('POST', '/v1/releases/assignments', {
        release: 'mnist',
        version: 4,
        device: device.id,
        contentKey: b64url(keys.contentKey.bytes),
      });
      await attest();
      await assert.rejects(
        fetchAssignedRelease({
          ...fetchOptions,
          pcrPolicyKey: generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey,
        }),
        (e) => isEdgeguardError(e, 'EG_RELEASE_REFUSED') && e.details?.reason === 'pcr-authorization',
      );
      const got = await fetchAssignedRelease({ ...fetchOptions, pcrPolicyKey: operator.publicKey });
      assert.equal(got?.target.version, 4);
      assert.deepEqual(
        got.pcrAuthorizations.map((a) => a.target),
        ['mnist/4/pcr-authorizations/kernel-next.json'],
      );
      // Without the key (a device with no authorized binding policy) none are fetched.
      assert.deepEqual((await fetchAssignedRelease(fetchOptions))?.pcrAuthorizations, []);
    });
  });
}
