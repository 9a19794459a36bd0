/**
 * The agent with a tamper sensor, end to end on real components: swtpm holds the binding key, the
 * control plane runs over real TLS on SQLite with the audit plugin, the sensor reads a sysfs-shaped
 * directory. The chassis-intrusion alarm flips, and then: inference answers 503 EG_LOCKED, /healthz
 * says locked, the TPM refuses the unwrap (EG_TPM_POLICY: PCR 16 moved), the control plane shows the
 * device `tampered` and refuses its certificate, and a restarted agent refuses to start (EG_LOCKED).
 * Re-provisioning is refused until the tamper PCR is reset (a reboot), then makes a new binding key,
 * clears the lock, and the agent serves again with the content key wrapped to the new key. The
 * compiled CLI (`npm run build` first) exits 9 on a locked device.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import YAML from 'yaml';
import { join } from 'node:path';
import { readContentKeyFile } from '../../src/crypto/index.ts';
import { isEdgeguardError } from '../../src/errors/index.ts';
import {
  TpmKeyStore,
  encodeWrappedKeyFile,
  initDevice,
  openDeviceKeyStore,
  parseBindingPublicKey,
  wrapContentKey,
} from '../../src/keystore/index.ts';
import { startAgent } from '../../src/agent/serve.ts';
import { reprovisionDevice } from '../../src/cli/commands/device-reprovision.ts';
import { auditServerPlugin } from '../../src/server/routes/audit.ts';
import { isLocked, TAMPER_RESPONSE_STEPS } from '../../src/tamper/index.ts';
import { FIXTURES, tempDir } from '../helpers/workspace.ts';
import { provisionedTpmFloor } from '../helpers/floor.ts';
import { TpmFloor } from '../../src/release/index.ts';
import { TPM_SKIP, startTestTpm, stopTestTpm } from '../helpers/swtpm.ts';
import { makeSysfs } from '../helpers/sysfs.ts';
import { startTestFleet } from '../server/fleet-helpers.ts';
import { serveFixture, startService, infer } from './serve-fixture.ts';

async function wrapTo(contentKeyPath: string, deviceDir: string, out: string): Promise<string> {
  const text = encodeWrappedKeyFile(
    wrapContentKey(
      await readContentKeyFile(contentKeyPath),
      parseBindingPublicKey(await readFile(join(deviceDir, 'binding.pub'), 'utf8')),
    ),
  );
  await writeFile(out, text);
  return text;
}

test(
  'an intrusion alarm locks the running agent: 503 EG_LOCKED, TPM refuses, control plane revokes, restart stays locked',
  { skip: TPM_SKIP },
  async (t) => {
    const tpm = await startTestTpm();
    t.after(() => stopTestTpm(tpm));
    const logKeyDir = await tempDir(t, 'eg-tamper-agent-log-');
    const fleet = await startTestFleet({ plugins: [auditServerPlugin({ dataDir: logKeyDir })] });
    t.after(() => fleet.stop());
    const sysfs = await makeSysfs();
    t.after(() => sysfs.remove());
    await sysfs.intrusion(0);

    const f = await serveFixture(t);
    const deviceDir = join(f.dir, 'device');
    const floor = await provisionedTpmFloor((await initDevice({ dir: deviceDir, tcti: tpm.tcti })).store);
    assert.equal(await floor.raise('model', 2), 2);
    const contentKey = join(f.dir, 'publisher-model.key');
    const wrappedText = await wrapTo(contentKey, deviceDir, join(f.dir, 'model.key.wrapped'));
    const device = await fleet.deviceCredential();
    const tamperSection = {
      sysfsRoot: sysfs.root,
      pollIntervalMs: 20,
      sensors: [{ kind: 'intrusion' as const, name: 'chassis', hwmon: 'hwmon0' }],
    };
    await writeFile(join(f.dir, 'fleet-ca.pem'), fleet.ca.rootPem);
    await writeFile(join(f.dir, 'device.crt'), device.cert);
    await writeFile(join(f.dir, 'device.key'), device.key, { mode: 0o600 });
    const config = f.config({
      contentKey: { wrapped: 'model.key.wrapped', device: 'device' },
      upload: { server: fleet.server.url, ca: 'fleet-ca.pem', cert: 'device.crt', key: 'device.key' },
      renewal: { enabled: false },
      journal: { forwardIntervalMs: 3_600_000 },
      tamper: tamperSection,
    });
    assert.equal(config.stateDir, deviceDir, 'the lock lives in the device directory by default');

    const agent = await startService(t, config);
    const digit = await readFile(join(FIXTURES, 'digits', '9-0.png'));
    assert.equal((await infer(agent.url, digit, 'image/png')).body.label, '9');
    const responseOf = () => agent.tamper!.response;
    assert.equal(responseOf(), undefined, 'quiet sensor: no response');

    await sysfs.intrusion(1);
    let response = responseOf();
    while (!response) {
      await new Promise((r) => setTimeout(r, 10));
      response = responseOf();
    }
    const report = await response;
    assert.deepEqual(
      report.steps.map((s) => [s.step, s.ok, s.error?.code]),
      TAMPER_RESPONSE_STEPS.map((s) => [s, true, undefined]),
    );

    const refused = await infer(agent.url, digit, 'image/png');
    assert.equal(refused.status, 503);
    assert.equal(refused.body.error?.code, 'EG_LOCKED');
    assert.match(refused.body.error!.message, /chassis \(intrusion\)/);
    const health = (await (await fetch(`${agent.url}/healthz`)).json()) as { status: string };
    assert.equal(health.status, 'locked');

    // The TPM itself refuses the binding key now (PCR 16 is no longer what the policy names).
    const store = await openDeviceKeyStore(deviceDir);
    await assert.rejects(
      () => store.unwrapContentKey(wrappedText),
      (e: unknown) => isEdgeguardError(e, 'EG_TPM_POLICY'),
    );

    // The control plane got the events at once (the periodic forward is an hour away).
    const record = await fleet.server.ctx.store.getDevice(device.deviceId);
    assert.equal(record?.status, 'tampered');
    assert.equal(await fleet.server.ctx.store.certificateStatus(device.serial), 'revoked');
    await assert.rejects(
      () => fleet.client(device).call('GET', '/v1/device/self'),
      (e: unknown) => isEdgeguardError(e, 'EG_UNAUTHORIZED'),
    );

    // A restart stays locked, before touching the key store or the network.
    await agent.close();
    assert.equal(await isLocked(deviceDir), true);
    await assert.rejects(
      () => startAgent(config),
      (e: unknown) => isEdgeguardError(e, 'EG_LOCKED') && /chassis \(intrusion\)/.test(e.message),
    );

    // Re-provisioning waits for the reboot that resets PCR 16 (simulated: a locality-0 reset).
    await assert.rejects(
      () => reprovisionDevice({ dir: deviceDir }),
      (e: unknown) => isEdgeguardError(e, 'EG_LOCKED') && /PCR 16.*reboot/.test(e.message),
    );
    await promisify(execFile)('tpm2_pcrreset', ['16'], { env: { ...process.env, TPM2TOOLS_TCTI: tpm.tcti } });
    const oldBinding = report.lockState.bindingKey;
    const r = await reprovisionDevice({ dir: deviceDir });
    assert.notEqual(r.device.bindingKey, oldBinding);
    assert.equal(r.previousBindingKey, oldBinding);
    assert.equal(await isLocked(deviceDir), false);
    assert.equal(JSON.parse(await readFile(join(r.retiredTo, 'device.json'), 'utf8')).bindingKey, oldBinding);
    // The anti-rollback floor moved to the new binding key unchanged (B is bound to the key's
    // authPolicy, which is the old one's here: the same PolicyPCR over the same boot).
    assert.equal(r.floor?.moved, true);
    const newStore = await openDeviceKeyStore(deviceDir);
    assert.ok(newStore instanceof TpmKeyStore);
    assert.equal(await new TpmFloor(newStore).read('model'), 2);
    assert.equal(await floor.read('model'), 2);
    // The old wrap is for the old key; the operator wraps again to the new binding.pub.
    await wrapTo(contentKey, deviceDir, join(f.dir, 'model.key.wrapped'));
    // The case is closed again; the device serves with its new key (no fleet identity until it re-enrolls).
    await sysfs.intrusion(0);
    const restored = await startService(t, f.config({ contentKey: config.contentKey, tamper: tamperSection }));
    assert.equal((await infer(restored.url, digit, 'image/png')).body.label, '9');
    // Closed here, not only in its after hook: the hooks registered before it (the TPM, the sensors'
    // directory, the device directory) would otherwise go while its tamper monitor still runs, and
    // a sensor that disappears is an alarm that writes a lock into the directory being removed.
    await restored.close();
  },
);

test('tamper detection needs a device-wrapped content key', async (t) => {
  const f = await serveFixture(t);
  assert.throws(
    () => f.config({ tamper: { sensors: [{ kind: 'intrusion', name: 'chassis', hwmon: 'hwmon0' }] } }),
    (e: unknown) => isEdgeguardError(e, 'EG_CONFIG') && /contentKey: \{ wrapped, device \}/.test(e.message),
  );
});

test('`edgeguard agent serve` on a locked device exits 9 with EG_LOCKED (a damaged lock file counts as locked)', async (t) => {
  const f = await serveFixture(t);
  await mkdir(join(f.dir, 'device'));
  await writeFile(join(f.dir, 'device', 'tamper.lock.json'), '{ not json');
  await writeFile(
    join(f.dir, 'agent.yaml'),
    YAML.stringify({ ...f.base, contentKey: { wrapped: 'model.key.wrapped', device: 'device' } }),
  );
  const CLI = join(import.meta.dirname, '..', '..', 'bin', 'edgeguard.js');
  const failed = await promisify(execFile)(process.execPath, [
    CLI,
    'agent',
    'serve',
    '--config',
    join(f.dir, 'agent.yaml'),
  ]).then(
    () => ({ code: 0, stderr: '' }),
    (e: { code: number; stderr: string }) => e,
  );
  assert.equal(failed.code, 9);
  assert.match(failed.stderr, /^EG_LOCKED: .*damaged.*reprovision/);
});
