/**
 * The agent installs what the director assigns, end to end on swtpm: a TPM device (AK and
 * certified binding key recorded as enrollment records them) with a real control plane, a
 * release published and assigned to it. While its attestation is not passing, `edgeguard agent
 * update` installs nothing (exit 3, reason attestation, the slots untouched, the refusal in the
 * control plane's audit log). After a passing attestation round (a played boot quoted by the AK
 * against its boot policy), `agent update` installs the release with the content key the director
 * wrapped to this device's binding key (no wrapped key is provisioned on the device), the smoke
 * test runs, the signed version report shows in the release status, and a serving agent serves it;
 * a serving agent with update.director.intervalMs installs the next assignment by itself, skipping
 * its rounds while another install holds the data directory's lock.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { agentConfig, startAgent } from '../../src/agent/index.ts';
import { createBootPolicy, formatBootPolicyYaml } from '../../src/attest/index.ts';
import { decodeLogLeaf, type AuditLog } from '../../src/audit/index.ts';
import { b64url } from '../../src/crypto/index.ts';
import { defaultSyntheticBoot, parseEventLog, playBoot, syntheticBootEvents } from '../../src/eventlog/index.ts';
import {
  pushAttestationEvidence,
  requestAttestationNonce,
  type FleetClient,
  type ReleaseStatusResponse,
} from '../../src/fleet/index.ts';
import { initDevice } from '../../src/keystore/index.ts';
import {
  acquireInstallLock,
  addRelease,
  initRepository,
  publishRepository,
  releasePaths,
} from '../../src/release/index.ts';
import { pino } from 'pino';
import { controlPlanePlugins } from '../../src/server/index.ts';
import { TPM_ALG, parseTpm2bPublic } from '../../src/tpm/index.ts';
import { provisionedTpmFloor } from '../helpers/floor.ts';
import { TPM_SKIP, startTestTpmWithAk, stopTestTpm, type TestTpmWithAk } from '../helpers/swtpm.ts';
import { eventually } from '../helpers/wait.ts';
import { CLI, FIXTURES, writeKeys, type KeyFiles } from '../helpers/workspace.ts';
import { packMnist, SMOKE_IMAGE } from '../release/ab-fixture.ts';
import { startTestFleet, type TestFleet } from '../server/fleet-helpers.ts';

const BANKS = [TPM_ALG.SHA256];

describe('the agent installs what the director assigns (swtpm)', { skip: TPM_SKIP }, () => {
  let tpm: TestTpmWithAk;
  let fleet: TestFleet;
  let work: string;
  let keys: KeyFiles;
  let goldenLog: Buffer;
  let admin: FleetClient;
  let device: { id: string; client: FleetClient };
  let auditLog: () => AuditLog;
  let configFile: string;
  let config: Record<string, unknown>;
  let updateDir: string;
  let provisionedKey: string;
  let enrolled: (cred: { deviceId: string }) => Promise<void>;
  let write: (name: string, text: string) => Promise<string>;

  async function events() {
    const log = auditLog();
    const leaves = await log.getEntries(0, (await log.publishCheckpoint()).size);
    return leaves.map((l) => decodeLogLeaf(Buffer.from(l, 'utf8')).event);
  }

  async function attest(client = device.client) {
    const issued = await requestAttestationNonce(client);
    const q = await tpm.client.attestation.quote(tpm.keys.ak, issued.pcrs, Buffer.from(issued.nonce, 'hex'));
    return pushAttestationEvidence(client, issued.nonce, {
      quote: q.attest,
      signature: q.signature,
      eventLog: goldenLog,
    });
  }

  // Asynchronous: the control plane runs in this process.
  const agentUpdate = (file = configFile) =>
    new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, [CLI, 'agent', 'update', '--config', file, '--json'], (error, stdout, stderr) =>
        resolve({ status: error ? (error.code as number) : 0, stdout, stderr }),
      );
    });

  before(async () => {
    tpm = await startTestTpmWithAk();
    goldenLog = await playBoot(tpm.client, BANKS, syntheticBootEvents(defaultSyntheticBoot(), BANKS));
    work = mkdtempSync(join(tmpdir(), 'eg-update-director-'));
    const dataDir = join(work, 'control-plane');
    // The binding key is made after the boot: its PCR policy holds for the played boot.
    const deviceKeys = join(work, 'device-keys');
    // As `edgeguard device init --tpm` does: the anti-rollback floor is provisioned with the keys.
    await provisionedTpmFloor((await initDevice({ dir: deviceKeys, tcti: tpm.tpm.tcti })).store);
    const certify = JSON.parse(await readFile(join(deviceKeys, 'binding.certify.json'), 'utf8')) as {
      bindingPublic: string;
    };

    const releases = join(dataDir, 'releases');
    await initRepository({ dir: releases });
    keys = await writeKeys(work);
    for (const version of [1, 2]) {
      await mkdir(join(work, `v${version}`));
      await addRelease({
        dir: releases,
        packagePath: await packMnist(join(work, `v${version}`), keys, version, 'mnist-cnn'),
        version,
        minVersion: version,
        smokeTest: { inputPath: SMOKE_IMAGE, expectedLabel: '3' },
      });
    }
    await publishRepository(releases);

    const controlPlane = controlPlanePlugins({ dataDir, attestation: { freshnessSeconds: 300 } });
    auditLog = () => controlPlane.audit.log!;
    fleet = await startTestFleet({ dataDir, plugins: controlPlane.all });
    admin = fleet.client(await fleet.adminCredential());
    const policy = formatBootPolicyYaml(createBootPolicy(parseEventLog(goldenLog)));
    // What enrollment records for a TPM device: its AK (TPMT_PUBLIC) and its certified binding key (TPM2B_PUBLIC).
    enrolled = async (cred) => {
      await fleet.server.ctx.store.db
        .updateTable('devices')
        .set({
          ak_public: Buffer.from(parseTpm2bPublic(tpm.keys.ak.public).tpmtBytes).toString('base64'),
          binding_public: certify.bindingPublic,
        })
        .where('id', '=', cred.deviceId)
        .execute();
      await admin.call('POST', '/v1/attestation/policies', { policy, label: 'golden.yaml', device: cred.deviceId });
    };
    const cred = await fleet.deviceCredential();
    await enrolled(cred);
    device = { id: cred.deviceId, client: fleet.client(cred) };
    await admin.call('POST', '/v1/releases/assignments', {
      release: 'mnist',
      version: 1,
      device: device.id,
      contentKey: b64url(keys.contentKey.bytes),
    });
    const published = await admin.call<{ keys: Array<{ pem: string }> }>('GET', '/v1/director/keys');

    // The device: its certificate and key, the pinned director key and repository root; no wrapped key.
    const files = join(work, 'device');
    await mkdir(files);
    write = async (name: string, text: string) => {
      await writeFile(join(files, name), text, { mode: 0o600 });
      return join(files, name);
    };
    updateDir = join(work, 'update');
    provisionedKey = join(deviceKeys, 'model.key.wrapped');
    config = {
      listen: { port: 0 },
      trust: { publicKeys: [keys.publicKeyPath] },
      contentKey: { wrapped: provisionedKey, device: deviceKeys },
      models: { primary: join(work, 'v1', 'mnist-1.egm'), ensemble: join(work, 'v1', 'mnist-1.egm') },
      review: { enabled: false },
      guard: { profile: join(FIXTURES, 'guard', 'mnist-cnn.profile.json') },
      log: { level: 'silent' },
      upload: {
        server: fleet.server.url,
        ca: await write('ca.pem', fleet.ca.rootPem),
        cert: await write('device.crt', cred.cert),
        key: await write('device.key', cred.key),
      },
      renewal: { enabled: false },
      journal: { enabled: false },
      update: {
        dir: updateDir,
        trustedRoot: join(releasePaths(releases).metadata, '1.root.json'),
        director: { keys: [await write('director.pub', published.body.keys[0]!.pem)] },
        watchIntervalMs: 100,
      },
    };
    configFile = join(work, 'agent.yaml');
    await writeFile(configFile, JSON.stringify(config));
  });

  after(async () => {
    await fleet?.stop();
    await stopTestTpm(tpm?.tpm);
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test('unattested: `agent update` installs nothing, exits 3 (attestation), the refusal is audited', async () => {
    const r = await agentUpdate();
    assert.equal(r.status, 3, r.stdout + r.stderr);
    assert.match(r.stdout + r.stderr, /EG_RELEASE_REFUSED/);
    assert.match(r.stdout + r.stderr, /attestation/);
    assert.equal(existsSync(join(updateDir, 'releases', 'active')), false, 'no slot became active');
    assert.equal(existsSync(join(updateDir, 'releases', 'a')), false, 'nothing was staged');
    const refused = (await events()).find(
      (e) => e.type === 'release.rejected' && e.subject === device.id && e.outcome === 'denied',
    );
    assert.ok(refused, 'a release.rejected event for the refused device');
    assert.match(String((refused.details as { reason: string }).reason), /^attestation:/);
  });

  test('attested: `agent update` installs with the director-wrapped key, reports it, and an agent serves it', async () => {
    assert.equal((await attest()).pass, true);
    const r = await agentUpdate();
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const out = JSON.parse(r.stdout) as {
      ok: boolean;
      slot: string;
      release: { name: string; version: number };
      smokeLabel: string;
      reported: unknown;
    };
    assert.deepEqual(out.release, { kind: 'model', name: 'mnist', version: 1 });
    assert.equal(out.slot, 'a');
    assert.equal(out.smokeLabel, '3', 'the smoke test ran on the unwrapped model');
    assert.equal(out.reported, true);
    // The slot keeps the device-specific key the director wrapped; none was provisioned on the device.
    assert.equal(existsSync(provisionedKey), false);
    assert.ok(existsSync(join(updateDir, 'releases', 'a', 'content.key.wrapped')));

    const status = (await admin.call<ReleaseStatusResponse>('GET', '/v1/releases/status')).body;
    const mine = status.devices.find((d) => d.deviceId === device.id && d.release === 'mnist');
    assert.equal(mine?.installed, 1);
    assert.equal(mine?.lastReport?.status, 'installed');

    const agent = await startAgent(agentConfig(config, work));
    try {
      const health = (await (await fetch(`${agent.url}/healthz`)).json()) as {
        models: { primary: { version: number } };
      };
      assert.equal(health.models.primary.version, 1);
      assert.match(agent.runtime.primary.provenance.packagePath!, /releases\/a\/package\.egm$/);
      const infer = await fetch(`${agent.url}/v1/infer`, {
        method: 'POST',
        headers: { 'content-type': 'image/png' },
        body: await readFile(SMOKE_IMAGE),
      });
      assert.equal(infer.status, 200, await infer.clone().text());
    } finally {
      await agent.close();
    }
  });

  test('the same assignment again is already installed; unassigned, there is nothing to do (exit 0)', async () => {
    await attest();
    const again = await agentUpdate();
    assert.equal(again.status, 0, again.stdout + again.stderr);
    assert.equal((JSON.parse(again.stdout) as { unchanged?: boolean }).unchanged, true);

    // Another attested device (the same TPM, enrolled again) that is assigned nothing.
    const other = await fleet.deviceCredential();
    await enrolled(other);
    assert.equal((await attest(fleet.client(other))).pass, true);
    const upload = config.upload as Record<string, string>;
    const otherFile = join(work, 'other.yaml');
    await writeFile(
      otherFile,
      JSON.stringify({
        ...config,
        upload: { ...upload, cert: await write('other.crt', other.cert), key: await write('other.key', other.key) },
        update: { ...(config.update as object), dir: join(work, 'other-update') },
      }),
    );
    const nothing = await agentUpdate(otherFile);
    assert.equal(nothing.status, 0, nothing.stdout + nothing.stderr);
    assert.equal((JSON.parse(nothing.stdout) as { nothingAssigned?: boolean }).nothingAssigned, true);
    assert.equal(existsSync(join(work, 'other-update', 'releases', 'active')), false);
  });

  test('a serving agent with update.director.intervalMs skips rounds while another install runs, then installs', async () => {
    await admin.call('POST', '/v1/releases/assignments', {
      release: 'mnist',
      version: 2,
      device: device.id,
      contentKey: b64url(keys.contentKey.bytes),
    });
    assert.equal((await attest()).pass, true);
    const update = config.update as { director: object };
    const serving = agentConfig(
      { ...config, update: { ...update, director: { ...update.director, intervalMs: 300 } } },
      work,
    );
    // A timer's `agent update` in another process, mid-install: the poller must not install beside it.
    const held = await acquireInstallLock(serving.update!.dir!);
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
    const agent = await startAgent(serving, { logger });
    try {
      const version = async () =>
        ((await (await fetch(`${agent.url}/healthz`)).json()) as { models: { primary: { version: number } } }).models
          .primary.version;
      await eventually('a director round skipped', () =>
        lines.some((l) => l.includes('director check skipped: another install is running')),
      );
      assert.equal(await version(), 1, 'nothing installed while the lock is held');
      held.release();
      await eventually('the agent serving v2', async () => (await version()) === 2);
      assert.match(agent.runtime.primary.provenance.packagePath!, /releases\/b\/package\.egm$/);
    } finally {
      held.release();
      await agent.close();
    }
    const status = (await admin.call<ReleaseStatusResponse>('GET', '/v1/releases/status')).body;
    const mine = status.devices.find((d) => d.deviceId === device.id && d.release === 'mnist');
    assert.equal(mine?.installed, 2);
  });
});
