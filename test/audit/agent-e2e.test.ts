/**
 * The whole audit path with a really enrolled device (software key provider, no TPM needed):
 * enrollment and approval are logged by the control plane itself, the device signs its journal
 * with the key of its mTLS certificate, forwards it, and every entry is provable.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  Journal,
  decodeLogLeaf,
  forwardJournal,
  journalSignerFromKey,
  LOG_PUB_FILE,
  verifyInclusion,
  type AuditEvent,
} from '../../src/audit/index.ts';
import { initDevice } from '../../src/keystore/index.ts';
import { enrollDevice, loadDeviceCredential, deviceClient } from '../../src/fleet/index.ts';
import { auditServerPlugin, type AuditServerPlugin } from '../../src/server/routes/audit.ts';
import { startTestFleet, type TestFleet } from '../server/fleet-helpers.ts';
import { runCli } from '../helpers/cli.ts';

/** The index of the device's entry of `type` in the tree of `size`. */
async function provenIndexOf(
  log: NonNullable<AuditServerPlugin['log']>,
  size: number,
  deviceId: string,
  type: string,
): Promise<number | undefined> {
  for (let i = 0; i < size; i++) {
    const leaf = decodeLogLeaf(Buffer.from((await log.inclusionProof(i, size)).leaf));
    if (leaf.event.subject === deviceId && leaf.event.type === type) return i;
  }
  return undefined;
}
import { eventually } from '../helpers/wait.ts';

describe('audit with an enrolled device', () => {
  let work: string;
  let fleet: TestFleet;
  let plugin: AuditServerPlugin;

  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'eg-audit-agent-'));
    const dataDir = join(work, 'server');
    plugin = auditServerPlugin({ dataDir, checkpointIntervalMs: 100 });
    fleet = await startTestFleet({ dataDir, policy: { allowSoftwareDevices: true }, plugins: [plugin] });
  });
  after(async () => {
    await fleet?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it('logs enrollment and approval, accepts the device journal signed with its certificate key, proves it all', async () => {
    const admin = fleet.client(await fleet.adminCredential('operator'));
    const deviceDir = join(work, 'device');
    await initDevice({ dir: deviceDir });
    const enrolling = enrollDevice({
      deviceDir,
      server: fleet.server.url,
      caPem: fleet.ca.rootPem,
      label: 'kiosk-7',
      poll: { initialMs: 100, maxMs: 300, timeoutMs: 60_000 },
    });
    const deviceId = await eventually('the device to ask for approval', async () => {
      const listed = await admin.call<{ devices: Array<{ id: string; label: string | null }> }>(
        'GET',
        '/v1/devices?status=pending',
      );
      return listed.body.devices.find((d) => d.label === 'kiosk-7')?.id;
    });
    await admin.call('POST', `/v1/devices/${deviceId}/approve`);
    await enrolling;

    // The device journals with the key of its certificate and forwards over mTLS.
    const cred = await loadDeviceCredential(deviceDir);
    const key = createPrivateKey(cred.keyPem);
    const journal = await Journal.open(join(deviceDir, 'audit.journal'), journalSignerFromKey(key), key);
    const events: AuditEvent[] = [
      {
        type: 'model.loaded',
        time: new Date().toISOString(),
        actor: { kind: 'device', id: deviceId },
        subject: deviceId,
        outcome: 'success',
        details: { modelSha256: 'aa'.repeat(32), name: 'mnist', keyProvider: 'software' },
      },
      // A failure event of the device's own (a tamper report would now revoke it: test/agent/tamper.test.ts).
      {
        type: 'agent.stopped',
        time: new Date().toISOString(),
        actor: { kind: 'device', id: deviceId },
        subject: deviceId,
        outcome: 'failure',
        details: { reason: 'watchdog restart', uptimeS: 42 },
      },
    ];
    await journal.append(events);
    const client = deviceClient(cred);
    try {
      const fwd = await forwardJournal(journal, client);
      assert.deepEqual([fwd.sent, fwd.logged, fwd.gaps.length], [2, 2, 0]);
    } finally {
      client.close();
    }

    const log = plugin.log!;
    await log.flush();
    const cp = await log.publishCheckpoint();
    const types: string[] = [];
    for (let i = 0; i < cp.size; i++) {
      const p = await log.inclusionProof(i, cp.size);
      assert.ok(verifyInclusion(p.leafHash, i, cp.size, p.proof, cp.root), `entry ${i}`);
      const leaf = decodeLogLeaf(Buffer.from(p.leaf));
      if (leaf.event.subject === deviceId) types.push(`${leaf.origin.kind}:${leaf.event.type}`);
    }
    assert.ok(types.includes('server:device.enrollment_requested'), types.join(', '));
    assert.ok(types.includes('server:device.approved'), types.join(', '));
    assert.ok(types.includes('device:model.loaded'));
    assert.ok(types.includes('device:agent.stopped'));
    // Enrollment before approval before the device's own events.
    assert.ok(types.indexOf('server:device.enrollment_requested') < types.indexOf('server:device.approved'));
    assert.ok(types.indexOf('server:device.approved') < types.indexOf('device:model.loaded'));

    // The CLI takes the enrolled device directory as its credential: server, pinned CA,
    // certificate and the TLS key unwrapped through the device key store (a wrapped key file
    // given as --key is not PEM and cannot be used).
    const ownIndex = (await provenIndexOf(log, cp.size, deviceId, 'model.loaded'))!;
    const logKey = join(fleet.dataDir, LOG_PUB_FILE);
    const proved = await runCli([
      '--json',
      'audit',
      'prove',
      String(ownIndex),
      '--device',
      deviceDir,
      '--log-key',
      logKey,
    ]);
    assert.equal(proved.code, 0, proved.stderr);
    assert.equal(JSON.parse(proved.stdout).entry.event.type, 'model.loaded');
  });
});
