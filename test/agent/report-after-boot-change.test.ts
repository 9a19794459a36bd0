/**
 * A device after an UNAUTHORIZED boot change still reports (real swtpm, real control plane, real
 * TLS, SQLite): provisioned with the operator's PCR policy key after a played boot, enrolled
 * through the auto-approve list with the EK hash `device status` prints, appraised (pass); then PCR
 * 7 is extended with nothing signed for it. The binding key refuses model keys (EG_TPM_POLICY) and
 * `device status` exits 5, but the TLS key (identity key) still opens, the certificate renews, and
 * the AK's evidence reaches the control plane, which records the failed verdict and closes the gate.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import YAML from 'yaml';
import { AttestationReporter, readDeviceAk } from '../../src/agent/index.ts';
import { createBootPolicy, formatBootPolicyYaml } from '../../src/attest/index.ts';
import { generateContentKey, readContentKeyFile } from '../../src/crypto/index.ts';
import { isEdgeguardError } from '../../src/errors/index.ts';
import { defaultSyntheticBoot, parseEventLog, playBoot, syntheticBootEvents } from '../../src/eventlog/index.ts';
import { deviceClient, enrollDevice, loadDeviceCredential, renewIfDue } from '../../src/fleet/index.ts';
import {
  deviceKeyStatus,
  encodeWrappedKeyFile,
  initDevice,
  openDeviceKeyStore,
  wrapContentKey,
} from '../../src/keystore/index.ts';
import { controlPlanePlugins, type AttestationServerPlugin } from '../../src/server/index.ts';
import { TPM_ALG, TpmClient } from '../../src/tpm/index.ts';
import { TPM_SKIP, startTestTpm, stopTestTpm, type Swtpm } from '../helpers/swtpm.ts';
import { eventually } from '../helpers/wait.ts';
import { FIXTURES } from '../helpers/workspace.ts';
import { infer, serveFixture, startServeProcess } from './serve-fixture.ts';
import { startTestFleet, type TestFleet } from '../server/fleet-helpers.ts';

describe('a device reports after an unauthorized boot change', { skip: TPM_SKIP }, () => {
  let work: string;
  let tpm: Swtpm;
  let fleet: TestFleet;
  let plugin: AttestationServerPlugin;
  let deviceDir: string;
  let logPath: string;
  let deviceId: string;

  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'eg-report-boot-'));
    tpm = await startTestTpm();
    const client = new TpmClient({ tcti: tpm.tcti });
    const golden = await playBoot(
      client,
      [TPM_ALG.SHA256],
      syntheticBootEvents(defaultSyntheticBoot(), [TPM_ALG.SHA256]),
    );
    logPath = join(work, 'binary_bios_measurements');
    writeFileSync(logPath, golden);

    const operator = generateKeyPairSync('rsa', { modulusLength: 2048 });
    deviceDir = join(work, 'device');
    await initDevice({
      dir: deviceDir,
      tcti: tpm.tcti,
      pcrPolicyKey: operator.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    });
    const status = await deviceKeyStatus(deviceDir);

    const dataDir = join(work, 'server');
    mkdirSync(join(dataDir, 'ek-roots'), { recursive: true });
    copyFileSync(tpm.ca.rootCertPath, join(dataDir, 'ek-roots', 'swtpm-root.pem'));
    copyFileSync(tpm.ca.issuerCertPath, join(dataDir, 'ek-roots', 'swtpm-issuer.pem'));
    writeFileSync(join(dataDir, 'auto-approve.txt'), `# from edgeguard device status\n${status.tpm!.ekSha256}\n`);
    const controlPlane = controlPlanePlugins({ dataDir });
    plugin = controlPlane.attestation;
    fleet = await startTestFleet({ dataDir, plugins: controlPlane.all });
    const enrolled = await enrollDevice({
      deviceDir,
      server: fleet.server.url,
      caPem: readFileSync(join(dataDir, 'fleet-ca.pem'), 'utf8'),
      poll: { initialMs: 50, maxMs: 200, timeoutMs: 30_000 },
    });
    deviceId = enrolled.deviceId;
    const admin = fleet.client(await fleet.adminCredential());
    const policy = formatBootPolicyYaml(createBootPolicy(parseEventLog(golden)));
    await admin.call('POST', '/v1/attestation/policies', { policy, label: 'golden.yaml', device: deviceId });
  });
  after(async () => {
    await fleet?.stop();
    await stopTestTpm(tpm);
    if (work) rmSync(work, { recursive: true, force: true });
  });

  const push = async () => {
    const cred = await loadDeviceCredential(deviceDir);
    const client = deviceClient(cred);
    try {
      return await new AttestationReporter({
        client,
        tpm: new TpmClient({ tcti: tpm.tcti }),
        ak: await readDeviceAk(deviceDir),
        eventLogPath: logPath,
        log: pino({ level: 'silent' }),
      }).pushNow();
    } finally {
      client.close();
    }
  };

  test('the auto-approve list took the EK hash device status prints; the played boot passes', async () => {
    const verdict = await push();
    assert.deepEqual([verdict.pass, verdict.reasons], [true, []]);
    assert.equal((await plugin.attestationGate(deviceId)).trusted, true);
  });

  test('unauthorized change: model keys refused, yet mTLS, renewal and evidence still work', async () => {
    const store = await openDeviceKeyStore(deviceDir);
    const wrapped = encodeWrappedKeyFile(wrapContentKey(generateContentKey(), store.bindingPublicKey));
    await new TpmClient({ tcti: tpm.tcti }).extendPcr(7, 'sha256', randomBytes(32));
    await assert.rejects(store.unwrapContentKey(wrapped), (e) => isEdgeguardError(e, 'EG_TPM_POLICY'));
    const status = await deviceKeyStatus(deviceDir);
    assert.equal(status.tpm!.satisfied, false);
    assert.deepEqual(
      status.tpm!.differences.map((d) => `${d.bank}:${d.index}`),
      ['sha256:7'],
    );

    const renewed = await renewIfDue(deviceDir, { force: true });
    assert.equal(renewed.renewed, true, 'agent renew no longer exits 5 after a boot change');
    const verdict = await push();
    assert.equal(verdict.pass, false);
    assert.deepEqual(
      verdict.reasons.map((r) => r.code),
      ['PCRS_DO_NOT_MATCH_LOG'],
    );
    assert.equal((await plugin.attestationGate(deviceId)).trusted, false);
  });

  test('agent serve after the change: no inference, but it keeps renewing and reporting; stopped, it exits 5', async (t) => {
    const f = await serveFixture(t);
    // The fixture's models, their content key wrapped to this device's binding key (refused now).
    const store = await openDeviceKeyStore(deviceDir);
    const key = await readContentKeyFile(join(f.dir, 'publisher-model.key'));
    writeFileSync(join(f.dir, 'model.key.wrapped'), encodeWrappedKeyFile(wrapContentKey(key, store.bindingPublicKey)));
    const configPath = join(f.dir, 'agent.yaml');
    writeFileSync(
      configPath,
      YAML.stringify({
        ...f.base,
        contentKey: { wrapped: 'model.key.wrapped', device: deviceDir },
        upload: { device: deviceDir },
        attestation: { enabled: true, eventLog: logPath, intervalMs: 1000 },
      }),
    );
    const before = (await plugin.attestationGate(deviceId)).lastVerdict?.id;
    const started = await startServeProcess(t, configPath);
    const url = started.value;
    const health = await fetch(`${url}/healthz`);
    assert.equal(health.status, 503);
    const body = (await health.json()) as { status: string; error: { code: string } };
    assert.deepEqual([body.status, body.error.code], ['refused', 'EG_TPM_POLICY']);
    const digit = readFileSync(join(FIXTURES, 'digits', '6-0.png'));
    const refused = await infer(url, digit, 'image/png');
    assert.deepEqual([refused.status, refused.body.error?.code], [503, 'EG_TPM_POLICY']);
    // The agent's own reporter reaches the control plane, which refuses this boot with its reasons.
    const gate = await eventually('a verdict pushed by the agent', async () => {
      const g = await plugin.attestationGate(deviceId);
      return g.lastVerdict && g.lastVerdict.id !== before ? g : undefined;
    });
    assert.equal(gate.lastVerdict!.pass, false);
    assert.equal(gate.trusted, false);
    started.child.kill('SIGTERM');
    const [code] = (await once(started.child, 'exit')) as [number | null];
    assert.equal(code, 5);
  });
});
