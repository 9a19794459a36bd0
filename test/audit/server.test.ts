import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createPrivateKey } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import {
  Journal,
  decodeLogLeaf,
  encodeJournalRecord,
  forwardJournal,
  hashLeaf,
  journalSignerFromKey,
  openCheckpoint,
  readLogVerifierKey,
  verifyInclusion,
  LOG_PUB_FILE,
  type AuditEvent,
  type JournalEntry,
} from '../../src/audit/index.ts';
import { auditServerPlugin, parseTileIndex } from '../../src/server/routes/audit.ts';
import { createTempDatabase, type TempDatabase } from '../helpers/postgres.ts';
import { startTestFleet, type TestFleet } from '../server/fleet-helpers.ts';
import { DEADLINE_MS, eventually } from '../helpers/wait.ts';

const exec = promisify(execFile);
const BIN = join(import.meta.dirname, '..', '..', 'bin', 'edgeguard.js');

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await exec(process.execPath, [BIN, ...args], { timeout: 60_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: err.code ?? -1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}

const deviceEvent = (deviceId: string, i: number): AuditEvent => ({
  type: 'guard.rejected',
  time: new Date().toISOString(),
  actor: { kind: 'device', id: deviceId },
  subject: deviceId,
  outcome: 'denied',
  details: { check: 'feature-squeezing', score: 1_000_000 + i, threshold: 900_000, queuedForReview: true },
});

type Proof = { index: number; size: number; leaf: string; leafHash: string; proof: string[] };
const records = (entries: JournalEntry[]) => entries.map((e) => encodeJournalRecord(e).subarray(4).toString('base64'));

for (const backend of ['sqlite', 'postgres'] as const)
  describe(`audit API on the control plane (mutual TLS) on ${backend}`, () => {
    let fleet: TestFleet;
    let pgDb: TempDatabase | undefined;
    let work: string;
    let admin: { cert: string; key: string };
    let device: { deviceId: string; cert: string; key: string };
    let other: { deviceId: string; cert: string; key: string };

    before(async () => {
      work = mkdtempSync(join(tmpdir(), 'eg-audit-api-'));
      // The plugin keeps its key in the data directory, which the fleet helper creates: point it there.
      const dataDir = mkdtempSync(join(tmpdir(), 'eg-audit-fleet-'));
      pgDb = backend === 'postgres' ? await createTempDatabase() : undefined;
      fleet = await startTestFleet({
        dataDir,
        ...(pgDb ? { dbUrl: pgDb.url } : {}),
        plugins: [auditServerPlugin({ dataDir, checkpointIntervalMs: 100 })],
      });
      admin = await fleet.adminCredential();
      device = await fleet.deviceCredential();
      other = await fleet.deviceCredential();
      writeFileSync(join(work, 'ca.pem'), fleet.ca.rootPem);
      writeFileSync(join(work, 'admin.crt'), admin.cert);
      writeFileSync(join(work, 'admin.key'), admin.key, { mode: 0o600 });
    });
    after(async () => {
      await fleet.stop();
      await pgDb?.drop();
      rmSync(fleet.dataDir, { recursive: true, force: true });
      rmSync(work, { recursive: true, force: true });
    });

    it('forwards a device journal, logs gaps with their position, and proves entries', async () => {
      const logKey = await readLogVerifierKey(join(fleet.dataDir, LOG_PUB_FILE));
      const key = createPrivateKey(device.key);
      const journal = await Journal.open(
        join(work, 'device.journal'),
        journalSignerFromKey(key),
        createPrivateKey(device.key),
      );
      const entries = await journal.append(Array.from({ length: 6 }, (_, i) => deviceEvent(device.deviceId, i)));
      const c = fleet.client(device);
      const r1 = await c.send<{ entries: Array<{ seq: number; index: number; status: string }>; gaps: unknown[] }>(
        'POST',
        '/v1/audit/journal',
        { records: records(entries.slice(0, 3)) },
      );
      assert.equal(r1.status, 200, JSON.stringify(r1.body));
      assert.deepEqual(
        r1.body.entries.map((e) => e.status),
        ['logged', 'logged', 'logged'],
      );
      const head = await c.send<{ seq: number }>('GET', '/v1/audit/journal/head');
      assert.equal(head.body.seq, 2);
      // Entry seq 3 is deleted on the device: the server logs a gap at position 0 of the next batch.
      const r2 = await c.send<{
        entries: Array<{ index: number }>;
        gaps: Array<{ position: number; expectedSeq: number; foundSeq: number }>;
      }>('POST', '/v1/audit/journal', { records: records(entries.slice(4)) });
      assert.equal(r2.status, 200);
      assert.deepEqual(
        r2.body.gaps.map((g) => [g.position, g.expectedSeq, g.foundSeq]),
        [[0, 3, 4]],
      );
      // Records signed by another device's key are refused.
      const otherJournal = await Journal.open(
        join(work, 'other.journal'),
        journalSignerFromKey(createPrivateKey(other.key)),
        createPrivateKey(other.key),
      );
      const forged = await c.send<{ error: { code: string } }>('POST', '/v1/audit/journal', {
        records: records(await otherJournal.append([deviceEvent(device.deviceId, 9)])),
      });
      assert.equal(forged.status, 403);
      // An admin cannot forward journals.
      assert.equal(
        (await fleet.client(admin).send('POST', '/v1/audit/journal', { records: records(entries) })).status,
        403,
      );

      // Wait for a checkpoint covering everything (the plugin signs every 100 ms here).
      const lastIndex = r2.body.entries[1]!.index;
      const note = await eventually('a checkpoint covering every entry', async () => {
        const cp = await fleet.client().send<Buffer>('GET', '/v1/audit/checkpoint');
        assert.equal(cp.status, 200);
        const text = Buffer.isBuffer(cp.body) ? cp.body.toString('utf8') : String(cp.body);
        return openCheckpoint(text, logKey).checkpoint.size > lastIndex ? text : undefined;
      });
      const checkpoint = openCheckpoint(note, logKey).checkpoint;
      assert.ok(checkpoint.size > lastIndex);

      // The device proves its own entry; it may not read another device's entries.
      const proof = await c.send<Proof>('GET', `/v1/audit/entries/${lastIndex}/proof?size=${checkpoint.size}`);
      assert.equal(proof.status, 200, JSON.stringify(proof.body));
      const leaf = Buffer.from(proof.body.leaf, 'base64');
      assert.ok(
        verifyInclusion(
          hashLeaf(leaf),
          lastIndex,
          checkpoint.size,
          proof.body.proof.map((p) => Buffer.from(p, 'base64')),
          checkpoint.rootHash,
        ),
      );
      const decoded = decodeLogLeaf(leaf);
      assert.equal(decoded.origin.kind === 'device' && decoded.origin.device.seq, 5);
      const gapIndex = r2.body.entries[0]!.index - 1;
      const gap = await fleet.client(admin).send<Proof>('GET', `/v1/audit/entries/${gapIndex}/proof`);
      assert.equal(decodeLogLeaf(Buffer.from(gap.body.leaf, 'base64')).event.type, 'audit.journal_gap');
      const denied = await fleet
        .client(other)
        .send<{ error: { code: string } }>('GET', `/v1/audit/entries/${lastIndex}/proof`);
      assert.equal(denied.status, 403);
      assert.equal((await fleet.client().send('GET', `/v1/audit/entries/${lastIndex}/proof`)).status, 401);

      // Public consistency proofs and hash tiles.
      const cons = await fleet
        .client()
        .send<{ proof: string[] }>('GET', `/v1/audit/proof/consistency?from=2&to=${checkpoint.size}`);
      assert.equal(cons.status, 200);
      const tile = await fleet.client().send<Buffer>('GET', `/v1/audit/tile/0/000.p/${checkpoint.size}`);
      assert.equal(tile.status, 200);
      assert.deepEqual(Buffer.from(tile.body).subarray(32 * lastIndex, 32 * (lastIndex + 1)), hashLeaf(leaf));
      assert.ok(cons.body.proof.length > 0);
    });

    it('the journal forwarder sends what the server lacks, resumes after a restart, and reports gaps', async () => {
      const path = join(work, 'forwarded.journal');
      // A fresh device of its own, so the server's head for it starts empty.
      const dev = await fleet.deviceCredential();
      const devKey = createPrivateKey(dev.key);
      const journal = await Journal.open(path, journalSignerFromKey(devKey), devKey);
      await journal.append(Array.from({ length: 5 }, (_, i) => deviceEvent(dev.deviceId, i)));
      const client = fleet.client(dev);
      const r1 = await forwardJournal(journal, client);
      assert.deepEqual([r1.sent, r1.logged, r1.serverSeq, r1.gaps.length], [5, 5, 4, 0]);
      // Nothing new: nothing sent.
      assert.equal((await forwardJournal(journal, client)).sent, 0);
      await journal.append([deviceEvent(dev.deviceId, 5), deviceEvent(dev.deviceId, 6)]);
      const r2 = await forwardJournal(await Journal.open(path, journalSignerFromKey(devKey), devKey), client, {
        batch: 1,
      });
      assert.deepEqual([r2.sent, r2.logged, r2.serverSeq], [2, 2, 6]);
    });

    it('logs approvals and revocations made through the API, and the CLI proves them over mTLS', async () => {
      const a = fleet.client(admin);
      const revoked = await a.send<{ revokedSerials: string[] }>('POST', `/v1/devices/${other.deviceId}/revoke`, {
        reason: 'keyCompromise',
      });
      assert.equal(revoked.status, 200);
      const appended = await a.send<{ index: number }>('POST', '/v1/audit/events', {
        type: 'policy.changed',
        time: new Date().toISOString(),
        actor: { kind: 'admin', id: 'ignored' },
        outcome: 'success',
        details: { policy: 'egress', newSha256: 'ab'.repeat(32) },
      });
      assert.equal(appended.status, 200, JSON.stringify(appended.body));
      const bad = await a.send<{ error: { code: string } }>('POST', '/v1/audit/events', { type: 'nonsense' });
      assert.equal(bad.status, 400);
      const pub = join(fleet.dataDir, LOG_PUB_FILE);
      const common = ['--server', fleet.server.url, '--ca', join(work, 'ca.pem'), '--log-key', pub];
      let proved:
        { entry: { event: { type: string; actor: { id: string }; details: Record<string, unknown> } } } | undefined;
      const deadline = Date.now() + DEADLINE_MS;
      while (proved === undefined && Date.now() < deadline) {
        const r = await cli([
          '--json',
          'audit',
          'prove',
          String(appended.body.index),
          ...common,
          '--cert',
          join(work, 'admin.crt'),
          '--key',
          join(work, 'admin.key'),
        ]);
        if (r.code === 0) proved = JSON.parse(r.stdout);
        else await new Promise((res) => setTimeout(res, 200));
      }
      assert.ok(proved, 'the entry was proved');
      assert.equal(proved.entry.event.type, 'policy.changed');
      assert.equal(proved.entry.event.actor.id, 'test-admin');
      // The revocation was logged by the server itself, just before.
      const rev = await cli([
        '--json',
        'audit',
        'prove',
        String(appended.body.index - 1),
        ...common,
        '--cert',
        join(work, 'admin.crt'),
        '--key',
        join(work, 'admin.key'),
      ]);
      assert.equal(rev.code, 0, rev.stderr);
      const revEntry = JSON.parse(rev.stdout).entry.event;
      assert.equal(revEntry.type, 'device.revoked');
      assert.deepEqual(revEntry.details.revokedSerials, revoked.body.revokedSerials);
      // The CLI appends through the API with the admin certificate too.
      writeFileSync(
        join(work, 'event.json'),
        JSON.stringify({
          type: 'admin.action',
          time: new Date().toISOString(),
          actor: { kind: 'admin', id: 'x' },
          outcome: 'success',
          details: { action: 'rotate-keys' },
        }),
      );
      const app = await cli([
        '--json',
        'audit',
        'append',
        join(work, 'event.json'),
        '--server',
        fleet.server.url,
        '--ca',
        join(work, 'ca.pem'),
        '--cert',
        join(work, 'admin.crt'),
        '--key',
        join(work, 'admin.key'),
      ]);
      assert.equal(app.code, 0, app.stderr);
      assert.equal(JSON.parse(app.stdout).index, appended.body.index + 1);
      // The routes are in the OpenAPI document.
      const spec = await fleet.client().send<{ paths: Record<string, unknown> }>('GET', '/docs/json');
      for (const path of [
        '/v1/audit/checkpoint',
        '/v1/audit/proof/consistency',
        '/v1/audit/entries/{index}/proof',
        '/v1/audit/journal',
        '/v1/audit/events',
      ])
        assert.ok(path in spec.body.paths, `OpenAPI lacks ${path}`);
      // A witness needs no certificate.
      const state = join(work, 'witness.checkpoint');
      const v1 = await cli(['audit', 'verify', ...common, '--state', state]);
      assert.equal(v1.code, 0, v1.stderr);
      const cp = await cli(['--json', 'audit', 'checkpoint', ...common]);
      assert.equal(cp.code, 0, cp.stderr);
      // Without the certificate, entry contents are refused.
      const noCert = await cli(['audit', 'prove', '0', ...common]);
      assert.equal(noCert.code, 7, noCert.stderr);
    });
  });

describe('tlog-tiles index paths', () => {
  it('parses 3-digit groups and partial widths', () => {
    assert.deepEqual(parseTileIndex('000'), { index: 0, width: 256 });
    assert.deepEqual(parseTileIndex('x001/x234/067'), { index: 1234067, width: 256 });
    assert.deepEqual(parseTileIndex('005.p/17'), { index: 5, width: 17 });
    for (const bad of ['5', '0005', 'x1/000', '000.p/0', '000.p/256', '000.p/017', '../000'])
      assert.throws(() => parseTileIndex(bad), /tile path/);
  });
});
