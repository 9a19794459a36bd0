import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { isEdgeguardError } from '../../src/errors/index.ts';
import { AuditLog, generateLogSigner, type AuditEvent } from '../../src/audit/index.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Store } from '../../src/store/index.ts';
import { auditServerPlugin } from '../../src/server/routes/audit.ts';
import { startTestFleet } from '../server/fleet-helpers.ts';
import { BACKENDS } from '../helpers/stores.ts';

function ev(i: number): AuditEvent {
  return {
    type: 'admin.action',
    time: new Date(Date.UTC(2026, 10, 25, 20, 0, 0, i)).toISOString(),
    actor: { kind: 'admin', id: 'alice' },
    subject: `device-${i}`,
    outcome: 'success',
    details: { action: 'approve', target: `device-${i}` },
  };
}

/** What an operator restoring an old backup (or an insider) leaves: the tree as it was at `size`. */
async function truncateStore(store: Store, size: number, root: Buffer): Promise<void> {
  await sql.raw(`DELETE FROM audit_entries WHERE idx >= ${size}`).execute(store.db);
  // A node (level L, index i) covers leaves [i * 2^L, (i + 1) * 2^L): those reaching past `size` go.
  for (let level = 0; level < 8; level++)
    await sql
      .raw(`DELETE FROM audit_nodes WHERE level = ${level} AND idx >= ${Math.floor(size / 2 ** level)}`)
      .execute(store.db);
  await sql.raw(`UPDATE audit_state SET size = ${size}, root = '${root.toString('hex')}'`).execute(store.db);
}

for (const backend of BACKENDS) {
  describe(`audit store behind its signed checkpoints on ${backend.name}`, () => {
    test('the full check names every checkpoint beyond the stored tree; appends are refused, never reuse indices', async () => {
      const { store, cleanup } = await backend.open();
      try {
        const signer = generateLogSigner('edgeguard.test/audit');
        const log = await AuditLog.open(store, { signer, checkpointIntervalMs: 0 });
        await log.appendMany(Array.from({ length: 12 }, (_, i) => ev(i)));
        const at12 = await log.publishCheckpoint();
        await log.appendMany(Array.from({ length: 5 }, (_, i) => ev(12 + i)));
        await log.publishCheckpoint();
        await log.appendMany(Array.from({ length: 3 }, (_, i) => ev(17 + i)));
        await log.publishCheckpoint();
        assert.deepEqual((await log.checkConsistency()).problems, []);
        assert.equal(await log.storeBehindCheckpoint(), undefined);

        await truncateStore(store, 12, at12.root);
        const report = await log.checkConsistency();
        for (const size of [17, 20])
          assert.ok(
            report.problems.some((p) =>
              new RegExp(`checkpoint at size ${size} .*beyond the 12 entries stored`).test(p),
            ),
            report.problems.join('; '),
          );
        assert.deepEqual(await log.storeBehindCheckpoint(), { stored: 12, signed: 20 });

        // The process that wrote them and a fresh one both refuse to append at reused indices.
        const behind = (e: unknown) => isEdgeguardError(e, 'EG_AUDIT_BEHIND');
        await assert.rejects(log.append(ev(100)), behind);
        const fresh = await AuditLog.open(store, { signer, checkpointIntervalMs: 0 });
        await assert.rejects(fresh.append(ev(101)), behind);
        assert.equal(Number((await sql.raw('SELECT size FROM audit_state').execute(store.db)).rows.length), 1);
        assert.equal((await log.checkConsistency()).size, 12, 'nothing was appended');
        await fresh.close();
        await log.close();
      } finally {
        await cleanup();
      }
    });
  });
}

test('a server whose store is behind its latest checkpoint answers appends 503, fails /healthz and says so in a metric', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'eg-behind-'));
  const audit = auditServerPlugin({ dataDir, checkpointIntervalMs: 0 });
  const fleet = await startTestFleet({ dataDir, plugins: [audit] });
  try {
    const admin = fleet.client(await fleet.adminCredential());
    const post = (i: number) => admin.send<{ error?: { code: string } }>('POST', '/v1/audit/events', ev(i) as never);
    for (let i = 0; i < 4; i++) assert.equal((await post(i)).status, 200);
    const at = await audit.log!.publishCheckpoint();
    for (let i = 4; i < 9; i++) assert.equal((await post(i)).status, 200);
    await audit.log!.publishCheckpoint();
    assert.equal((await fleet.client().send('GET', '/healthz')).status, 200);

    await truncateStore(fleet.server.ctx.store, at.size, at.root);
    const refused = await post(100);
    assert.equal(refused.status, 503);
    assert.equal(refused.body.error?.code, 'EG_AUDIT_BEHIND');
    const health = await fleet.client().send<{ problems: string[] }>('GET', '/healthz');
    assert.equal(health.status, 503);
    assert.match(health.body.problems.join(), /checkpoint was signed at 9/);
    const metric = await fleet.server.ctx.registry.getSingleMetricAsString('edgeguard_audit_store_behind_checkpoint');
    assert.match(metric, /edgeguard_audit_store_behind_checkpoint 1/);
  } finally {
    await fleet.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
});
