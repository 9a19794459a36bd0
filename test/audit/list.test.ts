/**
 * Listing the log: GET /v1/audit/entries with filters (type, device, time range) and paging by
 * index, for admins; `edgeguard audit list` on top of it.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { auditServerPlugin, type AuditServerPlugin } from '../../src/server/routes/audit.ts';
import { startTestFleet, type TestFleet } from '../server/fleet-helpers.ts';
import { runCli } from '../helpers/cli.ts';

interface Listed {
  entries: Array<{ index: number; event: { type: string; subject?: string; time: string } }>;
  next: number | null;
}

describe('audit list', () => {
  let fleet: TestFleet;
  let work: string;
  let plugin: AuditServerPlugin;
  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'eg-audit-list-'));
    plugin = auditServerPlugin({ dataDir: work, checkpointIntervalMs: 100 });
    fleet = await startTestFleet({ dataDir: work, plugins: [plugin] });
  });
  after(async () => {
    await fleet.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it('filters by type, device and time, pages by index, and the CLI prints the same', async () => {
    const admin = await fleet.adminCredential('lister');
    const a = fleet.client(admin);
    const devices = [await fleet.deviceCredential(), await fleet.deviceCredential()];
    for (let i = 0; i < 5; i++)
      await a.call('POST', '/v1/audit/events', {
        type: 'admin.action',
        time: new Date().toISOString(),
        actor: { kind: 'admin', id: 'x' },
        outcome: 'success',
        details: { action: `act-${i}` },
      });
    for (const d of devices) await a.call('POST', `/v1/devices/${d.deviceId}/revoke`, { reason: 'keyCompromise' });
    await plugin.log!.flush();
    await plugin.log!.publishCheckpoint();

    const actions = await a.call<Listed>('GET', '/v1/audit/entries?type=admin.action&limit=2');
    assert.equal(actions.body.entries.length, 2);
    assert.ok(actions.body.entries.every((e) => e.event.type === 'admin.action'));
    const page2 = await a.call<Listed>(`GET`, `/v1/audit/entries?type=admin.action&limit=2&after=${actions.body.next}`);
    assert.ok(page2.body.entries[0]!.index > actions.body.entries[1]!.index);
    let all = 0;
    for (let after: number | null = -1; after !== null;) {
      const r: { body: Listed } = await a.call<Listed>(
        'GET',
        `/v1/audit/entries?type=admin.action&limit=2${after >= 0 ? `&after=${after}` : ''}`,
      );
      all += r.body.entries.length;
      after = r.body.next;
    }
    assert.equal(all, 5);

    const one = await a.call<Listed>('GET', `/v1/audit/entries?device=${devices[1]!.deviceId}`);
    assert.deepEqual(
      one.body.entries.map((e) => e.event.type),
      ['device.revoked'],
    );
    const future = new Date(Date.now() + 3600_000).toISOString();
    assert.equal((await a.call<Listed>('GET', `/v1/audit/entries?since=${future}`)).body.entries.length, 0);
    const bad = await a.send<{ error: { code: string } }>('GET', '/v1/audit/entries?since=yesterday');
    assert.equal(bad.status, 400);
    assert.match(bad.body.error.code, /^EG_/);
    // Admins only.
    assert.equal((await fleet.client().send('GET', '/v1/audit/entries')).status, 401);

    const files = { ca: join(work, 'ca.pem'), cert: join(work, 'a.crt'), key: join(work, 'a.key') };
    writeFileSync(files.ca, fleet.ca.rootPem);
    writeFileSync(files.cert, admin.cert);
    writeFileSync(files.key, admin.key, { mode: 0o600 });
    const common = ['--server', fleet.server.url, '--ca', files.ca, '--cert', files.cert, '--key', files.key];
    const cli = await runCli(['--json', 'audit', 'list', ...common, '--type', 'admin.action']);
    assert.equal(cli.code, 0, cli.stderr);
    assert.equal(JSON.parse(cli.stdout).entries.length, 5);
  });
});
