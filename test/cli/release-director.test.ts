/**
 * The operator's director commands against a running control plane (the compiled CLI as a child
 * process, `npm run build` first): `release assign` with a canary and the content key,
 * `release status`, `release director-keys`, and their usage and refusal exit codes.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Assignment, ReleaseStatusResponse } from '../../src/fleet/index.ts';
import { addRelease, initRepository, publishRepository } from '../../src/release/index.ts';
import { controlPlanePlugins } from '../../src/server/index.ts';
import { runCli } from '../helpers/cli.ts';
import { packBytes } from '../helpers/packages.ts';
import { writeKeys, type KeyFiles } from '../helpers/workspace.ts';
import { startTestFleet, type TestFleet } from '../server/fleet-helpers.ts';

describe('edgeguard release assign / status / director-keys (CLI)', () => {
  let dir: string;
  let fleet: TestFleet;
  let conn: string[];
  let keys: KeyFiles;
  let devices: string[];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'eg-cli-director-'));
    const releases = join(dir, 'releases');
    await initRepository({ dir: releases });
    keys = await writeKeys(dir);
    const pkg = await packBytes(dir, Buffer.alloc(3000, 3), keys, { name: 'mnist', version: 3, file: 'mnist' });
    await addRelease({ dir: releases, packagePath: pkg.packagePath, version: 3 });
    await publishRepository(releases);
    fleet = await startTestFleet({ dataDir: dir, plugins: controlPlanePlugins({ dataDir: dir }).all });
    const admin = await fleet.adminCredential();
    writeFileSync(join(dir, 'admin.crt'), admin.cert);
    writeFileSync(join(dir, 'admin.key'), admin.key, { mode: 0o600 });
    writeFileSync(join(dir, 'ca.pem'), fleet.ca.rootPem);
    conn = [
      '--server',
      fleet.server.url,
      '--client-cert',
      join(dir, 'admin.crt'),
      '--client-key',
      join(dir, 'admin.key'),
    ];
    conn.push('--ca', join(dir, 'ca.pem'));
    const client = fleet.client(admin);
    devices = [];
    for (let i = 0; i < 3; i++) {
      const id = (await fleet.deviceCredential()).deviceId;
      await client.call('PUT', `/v1/attestation/groups/cameras/devices/${id}`);
      devices.push(id);
    }
  });
  after(async () => {
    await fleet?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('assign a canary of a group with the content key, then see it in status', async () => {
    const assigned = await runCli([
      '--json',
      'release',
      'assign',
      'mnist@3',
      '--group',
      'cameras',
      '--canary',
      '34%',
      '--max-failures',
      '0',
      '--content-key',
      keys.contentKeyPath,
      ...conn,
    ]);
    assert.equal(assigned.code, 0, assigned.stderr);
    const a = (JSON.parse(assigned.stdout) as { assignment: Assignment }).assignment;
    assert.deepEqual({ state: a.state, canary: a.canaryDevices?.length }, { state: 'active', canary: 2 });
    assert.ok(a.canaryDevices!.every((d) => devices.includes(d)));

    const status = await runCli(['--json', 'release', 'status', '--release', 'mnist', ...conn]);
    assert.equal(status.code, 0, status.stderr);
    const s = JSON.parse(status.stdout) as ReleaseStatusResponse;
    assert.deepEqual(
      s.assignments.map((x) => x.id),
      [a.id],
    );
    assert.deepEqual(s.devices.map((d) => d.deviceId).sort(), [...a.canaryDevices!].sort());
    const human = await runCli(['release', 'status', ...conn]);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /mnist@3 assigned to group cameras \(active/);
  });

  test('director-keys writes the PEM devices pin', async () => {
    const out = join(dir, 'director.pub');
    const r = await runCli(['release', 'director-keys', '-o', out, ...conn]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(createPublicKey(readFileSync(out, 'utf8')).asymmetricKeyType, 'ed25519');
  });

  test('usage errors exit 2; a device without a TPM binding key, an unknown release are refused', async () => {
    const noVersion = await runCli(['release', 'assign', 'mnist', '--group', 'cameras', ...conn]);
    assert.equal(noVersion.code, 2);
    assert.match(noVersion.stderr, /EG_USAGE: "mnist" is not NAME@VERSION/);
    const both = await runCli(['release', 'assign', 'mnist@3', ...conn]);
    assert.equal(both.code, 2);
    const software = await runCli(['release', 'assign', 'mnist@3', '--device', devices[0]!, ...conn]);
    assert.equal(software.code, 3);
    assert.match(software.stderr, /EG_UNSUPPORTED: .*no enrolled TPM binding key/);
    const unknown = await runCli(['release', 'assign', 'mnist@9', '--group', 'cameras', ...conn]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /EG_NOT_FOUND: mnist@9 is not in the published repository/);
  });
});
