/**
 * End to end on a real (software) TPM: device init, agent enrollment against a running control
 * plane, approval through the CLI, then the device calls a device-only endpoint with its
 * certificate, and the CLI lists it with its key provider.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { initDevice } from '../../src/keystore/index.ts';
import { enrollDevice, enrolledServer, loadDeviceCredential, deviceClient, renewIfDue } from '../../src/fleet/index.ts';
import { isEdgeguardError } from '../../src/errors/index.ts';
import { x509 } from '../../src/pki/index.ts';
import { startTestTpm, stopTestTpm, TPM_SKIP, type Swtpm } from '../helpers/swtpm.ts';
import { startTestFleet, type TestFleet } from '../server/fleet-helpers.ts';

const run = promisify(execFile);
const CLI = join(import.meta.dirname, '..', '..', 'bin', 'edgeguard.js');

describe('enrollment end to end on swtpm', { skip: TPM_SKIP }, () => {
  let tpm: Swtpm;
  let fleet: TestFleet;
  let work: string;
  let adminFiles: { cert: string; key: string; ca: string };

  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'eg-enroll-e2e-'));
    tpm = await startTestTpm();
    const dataDir = join(work, 'server');
    mkdirSync(join(dataDir, 'ek-roots'), { recursive: true });
    // The operator trusts the TPM vendor's CA: here swtpm's local CA (root and intermediate).
    copyFileSync(tpm.ca.rootCertPath, join(dataDir, 'ek-roots', 'swtpm-root.pem'));
    copyFileSync(tpm.ca.issuerCertPath, join(dataDir, 'ek-roots', 'swtpm-issuer.pem'));
    fleet = await startTestFleet({ dataDir, policy: { allowSoftwareDevices: true } });
    const admin = await fleet.adminCredential('operator');
    adminFiles = { cert: join(work, 'admin.crt'), key: join(work, 'admin.key'), ca: join(dataDir, 'fleet-ca.pem') };
    writeFileSync(adminFiles.cert, admin.cert);
    writeFileSync(adminFiles.key, admin.key, { mode: 0o600 });
  });
  after(async () => {
    await fleet?.stop();
    await stopTestTpm(tpm);
    rmSync(work, { recursive: true, force: true });
  });

  const cli = async (...args: string[]) => {
    const r = await run(
      process.execPath,
      [
        CLI,
        '--json',
        ...args,
        '--server',
        fleet.server.url,
        '--cert',
        adminFiles.cert,
        '--key',
        adminFiles.key,
        '--ca',
        adminFiles.ca,
      ],
      { timeout: 30_000 },
    );
    return JSON.parse(r.stdout) as Record<string, unknown>;
  };

  it('enrolls a TPM device, waits for CLI approval, then talks mTLS to a device-only endpoint', async () => {
    const deviceDir = join(work, 'device-tpm');
    await initDevice({ dir: deviceDir, tcti: tpm.tcti });
    const progress: string[] = [];
    const enrolling = enrollDevice({
      deviceDir,
      server: fleet.server.url,
      caPem: readFileSync(adminFiles.ca, 'utf8'),
      label: 'camera 7',
      poll: { initialMs: 100, maxMs: 400, timeoutMs: 60_000 },
      onProgress: (m) => progress.push(m),
    });
    // The operator sees the pending device (with its key provider) and approves it with the CLI.
    let pendingId: string | undefined;
    for (let i = 0; i < 200 && !pendingId; i++) {
      const listed = (await cli('device', 'list', '--status', 'pending')) as {
        devices: Array<{ id: string; keyProvider: string; label: string }>;
      };
      pendingId = listed.devices.find((d) => d.label === 'camera 7')?.id;
      if (!pendingId) await sleep(100);
    }
    assert.ok(pendingId, 'the device never showed up as pending');
    const approved = (await cli('device', 'approve', pendingId)) as { device: { status: string } };
    assert.equal(approved.device.status, 'approved');
    const result = await enrolling;
    assert.equal(result.deviceId, pendingId);
    assert.equal(result.keyProvider, 'tpm');
    assert.ok(progress.some((p) => /ActivateCredential/.test(p)));
    assert.ok(progress.some((p) => /waiting for an operator/.test(p)));

    // The device's certificate: our fleet CA, device profile, 30 days.
    const cred = await loadDeviceCredential(deviceDir);
    assert.equal(cred.deviceId, pendingId);
    const days = (cred.certificate.notAfter.getTime() - cred.certificate.notBefore.getTime()) / 86400e3;
    assert.ok(days > 29.9 && days < 30.1);
    const client = deviceClient(cred);
    try {
      const self = await client.call<{ id: string; keyProvider: string; softwareBound: boolean; status: string }>(
        'GET',
        '/v1/device/self',
      );
      assert.equal(self.body.id, pendingId);
      assert.equal(self.body.status, 'approved');
      assert.equal(self.body.keyProvider, 'tpm');
      assert.equal(self.body.softwareBound, false);
    } finally {
      client.close();
    }

    // The CLI lists it with its key provider; show has the EK evidence.
    const listed = (await cli('device', 'list')) as {
      devices: Array<{ id: string; keyProvider: string; status: string }>;
    };
    assert.deepEqual(
      listed.devices.find((d) => d.id === pendingId),
      { ...listed.devices.find((d) => d.id === pendingId), keyProvider: 'tpm', status: 'approved' },
    );
    const shown = (await cli('device', 'show', pendingId)) as { device: { ekCertificate: boolean; akName: string } };
    assert.equal(shown.device.ekCertificate, true);
    assert.match(shown.device.akName, /^000b[0-9a-f]{64}$/);

    // Nothing secret in the clear in the device directory: the TLS key is wrapped to the TPM binding key.
    for (const f of readdirSync(join(deviceDir, 'fleet'))) {
      assert.doesNotMatch(
        readFileSync(join(deviceDir, 'fleet', f), 'utf8'),
        /PRIVATE KEY/,
        `fleet/${f} holds a plaintext key`,
      );
    }

    // Enrolling again is refused locally; renewal keeps the key and gives a fresh certificate.
    await assert.rejects(
      enrollDevice({ deviceDir, server: fleet.server.url, caPem: readFileSync(adminFiles.ca, 'utf8') }),
      (e) => isEdgeguardError(e, 'EG_EXISTS'),
    );
    assert.equal((await renewIfDue(deviceDir)).renewed, false);
    const renewed = await renewIfDue(deviceDir, { force: true });
    assert.equal(renewed.renewed, true);
    const after = await loadDeviceCredential(deviceDir);
    assert.notEqual(after.certificate.serialNumber, cred.certificate.serialNumber);
    assert.deepEqual(Buffer.from(after.certificate.publicKey.rawData), Buffer.from(cred.certificate.publicKey.rawData));
    assert.ok(after.certificate instanceof x509.X509Certificate);

    // Revoked through the CLI: the device is refused on its next call.
    await cli('device', 'revoke', pendingId, '--reason', 'keyCompromise');
    const c2 = deviceClient(after);
    try {
      const r = await c2.send<{ error: { code: string } }>('GET', '/v1/device/self');
      assert.equal(r.status, 401);
    } finally {
      c2.close();
    }
  });

  it('enrolls a software device where policy allows it, labelled software-bound', async () => {
    const deviceDir = join(work, 'device-sw');
    await initDevice({ dir: deviceDir });
    const enrolling = enrollDevice({
      deviceDir,
      server: fleet.server.url,
      caPem: readFileSync(adminFiles.ca, 'utf8'),
      label: 'kiosk',
      poll: { initialMs: 100, maxMs: 300, timeoutMs: 60_000 },
    });
    let id: string | undefined;
    for (let i = 0; i < 200 && !id; i++) {
      const listed = (await cli('device', 'list', '--status', 'pending')) as {
        devices: Array<{ id: string; label: string; keyProvider: string; softwareBound: boolean }>;
      };
      const d = listed.devices.find((x) => x.label === 'kiosk');
      if (d) {
        assert.equal(d.keyProvider, 'software');
        assert.equal(d.softwareBound, true);
        id = d.id;
      } else await sleep(100);
    }
    assert.ok(id);
    await cli('device', 'approve', id);
    const result = await enrolling;
    assert.equal(result.keyProvider, 'software');
    const cred = await loadDeviceCredential(deviceDir);
    const client = deviceClient(cred);
    try {
      const self = await client.call<{ softwareBound: boolean }>('GET', '/v1/device/self');
      assert.equal(self.body.softwareBound, true);
    } finally {
      client.close();
    }
    // The control plane's URL is read without opening the device's keys: with its TLS key file
    // unreadable, the credential cannot be loaded, the server URL still can.
    assert.equal(await enrolledServer(deviceDir), fleet.server.url);
    const tlsKey = join(deviceDir, 'fleet', 'tls-key.json');
    const saved = readFileSync(tlsKey);
    writeFileSync(tlsKey, 'not a key');
    try {
      await assert.rejects(loadDeviceCredential(deviceDir));
      assert.equal(await enrolledServer(deviceDir), fleet.server.url);
    } finally {
      writeFileSync(tlsKey, saved);
    }
    await assert.rejects(enrolledServer(join(work, 'never-enrolled')), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'EG_NOT_FOUND');
      assert.match(e.message, /is not enrolled yet/);
      return true;
    });
  });
});
