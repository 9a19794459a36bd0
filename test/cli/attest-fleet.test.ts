/**
 * The operator's attestation commands against a running control plane (the compiled CLI as a
 * child process, `npm run build` first): `attest policy assign` stores a policy for a device or a
 * group, `device attest-status` exits 9 for a device without fresh passing evidence and names why,
 * and `device show` includes the attestation state.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBootPolicy, formatBootPolicyYaml } from '../../src/attest/index.ts';
import { defaultSyntheticBoot, encodeEventLog, parseEventLog, syntheticBootEvents } from '../../src/eventlog/index.ts';
import { controlPlanePlugins } from '../../src/server/index.ts';
import { TPM_ALG } from '../../src/tpm/index.ts';
import { runCli } from '../helpers/cli.ts';
import { startTestFleet, type TestFleet } from '../server/fleet-helpers.ts';

describe('edgeguard attest policy assign / attest group / device attest-status (CLI)', () => {
  let dir: string;
  let fleet: TestFleet;
  let conn: string[];
  let deviceId: string;
  let policyFile: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'eg-cli-attest-'));
    fleet = await startTestFleet({ dataDir: dir, plugins: controlPlanePlugins({ dataDir: dir }).all });
    const admin = await fleet.adminCredential();
    writeFileSync(join(dir, 'admin.crt'), admin.cert);
    writeFileSync(join(dir, 'admin.key'), admin.key, { mode: 0o600 });
    writeFileSync(join(dir, 'ca.pem'), fleet.ca.rootPem);
    conn = ['--server', fleet.server.url, '--cert', join(dir, 'admin.crt'), '--key', join(dir, 'admin.key')];
    conn.push('--ca', join(dir, 'ca.pem'));
    deviceId = (await fleet.deviceCredential()).deviceId;
    const log = encodeEventLog([TPM_ALG.SHA256], syntheticBootEvents(defaultSyntheticBoot(), [TPM_ALG.SHA256]));
    policyFile = join(dir, 'golden.yaml');
    writeFileSync(policyFile, formatBootPolicyYaml(createBootPolicy(parseEventLog(log))));
  });
  after(async () => {
    await fleet?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('assign to a device and to a group; a usage error without a target', async () => {
    const toDevice = await runCli(['--json', 'attest', 'policy', 'assign', policyFile, '--device', deviceId, ...conn]);
    assert.equal(toDevice.code, 0, toDevice.stderr);
    assert.match((JSON.parse(toDevice.stdout) as { sha256: string }).sha256, /^[0-9a-f]{64}$/);
    const grouped = await runCli(['attest', 'group', 'line-1', deviceId, ...conn]);
    assert.equal(grouped.code, 0, grouped.stderr);
    const toGroup = await runCli(['attest', 'policy', 'assign', policyFile, '--group', 'line-1', ...conn]);
    assert.equal(toGroup.code, 0, toGroup.stderr);
    const neither = await runCli(['attest', 'policy', 'assign', policyFile, ...conn]);
    assert.equal(neither.code, 2);
    assert.match(neither.stderr, /EG_USAGE/);
    writeFileSync(join(dir, 'bad.yaml'), 'version: 1\npcrs: sha256:0\nsecureBoot: { required: true }\n');
    const bad = await runCli(['attest', 'policy', 'assign', join(dir, 'bad.yaml'), '--device', deviceId, ...conn]);
    assert.equal(bad.code, 9);
    assert.match(bad.stderr, /EG_ATTEST_POLICY: .*PCR 7/);
  });

  test('attest-status exits 9 without evidence; device show includes the state', async () => {
    const status = await runCli(['device', 'attest-status', deviceId, ...conn]);
    assert.equal(status.code, 9);
    assert.match(status.stdout, /attestation: +unknown/);
    assert.match(status.stdout, /NO_EVIDENCE/);
    assert.match(status.stderr, /EG_ATTEST_REFUSED/);
    const show = await runCli(['--json', 'device', 'show', deviceId, ...conn]);
    assert.equal(show.code, 0, show.stderr);
    const shown = JSON.parse(show.stdout) as { attestation: { trusted: boolean; state: string } };
    assert.deepEqual([shown.attestation.trusted, shown.attestation.state], [false, 'unknown']);
  });
});
