import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { sql, type Transaction } from 'kysely';
import { isEdgeguardError } from '../../src/errors/index.ts';
import {
  AuditLog,
  JOURNAL_MAGIC,
  Journal,
  Witness,
  decodeLogLeaf,
  generateLogSigner,
  hashLeaf,
  journalSignerFromKey,
  openCheckpoint,
  parseJournal,
  encodeJournalRecord,
  verifyConsistency,
  verifyInclusion,
  type AuditEvent,
} from '../../src/audit/index.ts';
import { Store } from '../../src/store/index.ts';
import { BACKENDS } from '../helpers/stores.ts';
import { createTempDatabase } from '../helpers/postgres.ts';

const run = promisify(execFile);

function ev(i: number, actor = 'alice'): AuditEvent {
  return {
    type: 'admin.action',
    time: new Date(Date.UTC(2026, 10, 25, 20, 0, 0, i % 1000)).toISOString(),
    actor: { kind: 'admin', id: actor },
    subject: `device-${i}`,
    outcome: 'success',
    details: { action: 'approve', target: `device-${i}` },
  };
}

/** An event of a type a device journals (admin.action is the control plane's own). */
function deviceEv(i: number): AuditEvent {
  return {
    type: 'agent.stopped',
    time: new Date(Date.UTC(2026, 10, 25, 20, 0, 0, i % 1000)).toISOString(),
    actor: { kind: 'device', id: 'dev-1' },
    subject: 'dev-1',
    outcome: 'success',
    details: { reason: `stop ${i}`, uptimeS: i },
  };
}

async function rawSql(store: Store, text: string): Promise<void> {
  await sql.raw(text).execute(store.db);
}

for (const backend of BACKENDS) {
  describe(`audit log on ${backend.name}`, () => {
    test('appends get contiguous indices; checkpoints verify; every inclusion and consistency proof verifies', async () => {
      const { store, cleanup } = await backend.open();
      try {
        const signer = generateLogSigner('edgeguard.test/audit');
        const log = await AuditLog.open(store, { signer, checkpointIntervalMs: 0 });
        const first = await log.appendMany(Array.from({ length: 37 }, (_, i) => ev(i)));
        assert.deepEqual(
          first.map((r) => r.index),
          Array.from({ length: 37 }, (_, i) => i),
        );
        const cp1 = await log.publishCheckpoint();
        assert.equal(cp1.size, 37);
        const opened = openCheckpoint(cp1.note, log.verifier);
        assert.equal(opened.checkpoint.size, 37);
        // Publishing again without growth returns the same checkpoint.
        assert.equal((await log.publishCheckpoint()).note, cp1.note);
        await log.appendMany(Array.from({ length: 300 }, (_, i) => ev(37 + i)));
        const cp2 = await log.publishCheckpoint();
        assert.equal(cp2.size, 337);
        for (const index of [0, 1, 36, 100, 255, 256, 336]) {
          const p = await log.inclusionProof(index);
          assert.equal(p.size, 337);
          assert.equal(decodeLogLeaf(Buffer.from(p.leaf)).event.subject, `device-${index}`);
          assert.ok(verifyInclusion(hashLeaf(Buffer.from(p.leaf)), index, 337, p.proof, cp2.root), `entry ${index}`);
        }
        const cproof = await log.consistencyProof(37, 337);
        assert.ok(verifyConsistency(37, 337, cproof, cp1.root, cp2.root));
        // Proofs against an older checkpoint size also verify.
        const old = await log.inclusionProof(5, 37);
        assert.ok(verifyInclusion(old.leafHash, 5, 37, old.proof, cp1.root));
        await assert.rejects(log.inclusionProof(337), (e: unknown) => isEdgeguardError(e, 'EG_NOT_FOUND'));
        // tlog-tiles: the first level-0 tile is the 256 leaf hashes.
        const tile = await log.readTile(0, 0);
        assert.equal(tile.length, 256 * 32);
        assert.deepEqual(tile.subarray(32 * 7, 32 * 8), hashLeaf(Buffer.from(await log.getEntry(7))));
        const bundle = await log.readEntryBundle(0, 3);
        assert.equal(bundle.readUInt16BE(0), Buffer.byteLength(await log.getEntry(0)));
        assert.deepEqual((await log.checkConsistency()).problems, []);
        await log.close();
        // A replica configured with another key (or origin) refuses to start a second line of checkpoints.
        const stray = await AuditLog.open(store, {
          signer: generateLogSigner('edgeguard.test/audit'),
          checkpointIntervalMs: 0,
        });
        await stray.append(ev(999));
        await assert.rejects(
          stray.publishCheckpoint(),
          (e: unknown) => isEdgeguardError(e, 'EG_AUDIT') && /same audit-log.key/.test((e as Error).message),
        );
        await stray.close();
      } finally {
        await cleanup();
      }
    });

    test('appendWith: the store write commits with its entry; a failing write drops only its own entry', async () => {
      const { store, cleanup } = await backend.open();
      try {
        const log = await AuditLog.open(store, {
          signer: generateLogSigner('edgeguard.test/audit'),
          checkpointIntervalMs: 0,
        });
        await rawSql(store, 'create table audit_work_test (k varchar(10) primary key)');
        const insert = (k: string) => async (trx: Transaction<unknown>) => {
          await sql`insert into audit_work_test (k) values (${k})`.execute(trx);
        };
        // Queued in one turn: one batch, one transaction.
        const [a, dup, plain, b] = await Promise.allSettled([
          log.appendWith(ev(1), insert('a')),
          log.appendWith(ev(2), insert('a')),
          log.append(ev(3)),
          log.appendWith(ev(4), insert('b')),
        ]);
        assert.deepEqual(
          [a, plain, b].map((r) => (r.status === 'fulfilled' ? r.value.index : r.reason)),
          [0, 1, 2],
        );
        assert.equal(dup.status, 'rejected');
        const rows = await sql<{ k: string }>`select k from audit_work_test order by k`.execute(store.db);
        assert.deepEqual(
          rows.rows.map((r) => r.k),
          ['a', 'b'],
        );
        const entries = await log.getEntries(0, (await log.publishCheckpoint()).size);
        assert.deepEqual(
          entries.map((l) => decodeLogLeaf(Buffer.from(l, 'utf8')).event.subject),
          ['device-1', 'device-3', 'device-4'],
        );
        assert.deepEqual((await log.checkConsistency()).problems, []);
        await log.close();
      } finally {
        await cleanup();
      }
    });

    test('device journal entries are logged with chain checks: duplicates, gaps with positions, forgeries', async () => {
      const { store, cleanup } = await backend.open();
      const dir = mkdtempSync(join(tmpdir(), 'eg-audit-dev-'));
      try {
        const log = await AuditLog.open(store, {
          signer: generateLogSigner('edgeguard.test/audit'),
          checkpointIntervalMs: 0,
        });
        const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
        const journal = await Journal.open(join(dir, 'j'), journalSignerFromKey(privateKey), publicKey);
        const entries = await journal.append(Array.from({ length: 8 }, (_, i) => deviceEv(i)));
        const records = entries.map((e) => encodeJournalRecord(e).subarray(4));
        const r1 = await log.appendDeviceRecords('dev-1', publicKey, records.slice(0, 3));
        assert.deepEqual(
          r1.entries.map((e) => [e.seq, e.index, e.status]),
          [
            [0, 0, 'logged'],
            [1, 1, 'logged'],
            [2, 2, 'logged'],
          ],
        );
        assert.deepEqual(r1.gaps, []);
        // A resend (the agent lost the response) is recognised, not logged twice.
        const r2 = await log.appendDeviceRecords('dev-1', publicKey, records.slice(2, 4));
        assert.deepEqual(
          r2.entries.map((e) => [e.seq, e.index, e.status]),
          [
            [2, 2, 'duplicate'],
            [3, 3, 'logged'],
          ],
        );
        // Entry seq 4 was deleted on the device before forwarding: a gap at position 0 of the batch.
        const r3 = await log.appendDeviceRecords('dev-1', publicKey, records.slice(5, 8));
        assert.equal(r3.gaps.length, 1);
        assert.deepEqual(
          [r3.gaps[0]?.position, r3.gaps[0]?.expectedSeq, r3.gaps[0]?.foundSeq, r3.gaps[0]?.kind],
          [0, 4, 5, 'missing'],
        );
        const gapLeaf = decodeLogLeaf(Buffer.from(await log.getEntry(4)));
        assert.equal(gapLeaf.event.type, 'audit.journal_gap');
        assert.equal(gapLeaf.event.subject, 'dev-1');
        const devLeaf = decodeLogLeaf(Buffer.from(await log.getEntry(5)));
        assert.equal(devLeaf.origin.kind === 'device' ? devLeaf.origin.device.seq : -1, 5);
        assert.deepEqual(await log.deviceHead('dev-1'), { seq: 7, hash: (entries[7]?.hash as Buffer).toString('hex') });
        // A record signed by another key is refused and nothing is logged.
        const sizeBefore = await log.size();
        const other = generateKeyPairSync('ec', { namedCurve: 'P-256' });
        const j2 = await Journal.open(join(dir, 'j2'), journalSignerFromKey(other.privateKey), other.publicKey);
        const forged = (await j2.append([deviceEv(1)])).map((e) => encodeJournalRecord(e).subarray(4));
        await assert.rejects(log.appendDeviceRecords('dev-1', publicKey, forged), (e: unknown) =>
          isEdgeguardError(e, 'EG_SIGNATURE_INVALID'),
        );
        await assert.rejects(log.appendDeviceRecords('dev-1', publicKey, [Buffer.from('garbage')]), (e: unknown) =>
          isEdgeguardError(e, 'EG_FORMAT'),
        );
        assert.equal(await log.size(), sizeBefore);
        // The device rewrites seq 6 (re-signed with its own key) after it was logged: a conflict.
        const rewritten = await Journal.open(join(dir, 'j3'), journalSignerFromKey(privateKey), publicKey);
        const alt = await rewritten.append(Array.from({ length: 7 }, (_, i) => deviceEv(100 + i)));
        const r4 = await log.appendDeviceRecords('dev-1', publicKey, [encodeJournalRecord(alt[6]!).subarray(4)]);
        assert.deepEqual(
          r4.entries.map((e) => e.status),
          ['conflict'],
        );
        assert.equal(r4.gaps[0]?.kind, 'altered');
        await log.publishCheckpoint();
        assert.deepEqual((await log.checkConsistency()).problems, []);
        await log.close();
      } finally {
        rmSync(dir, { recursive: true, force: true });
        await cleanup();
      }
    });

    test('editing or deleting a stored row is detected by the next consistency check', async () => {
      const { store, cleanup } = await backend.open();
      try {
        const log = await AuditLog.open(store, {
          signer: generateLogSigner('edgeguard.test/audit'),
          checkpointIntervalMs: 0,
        });
        await log.appendMany(Array.from({ length: 100 }, (_, i) => ev(i)));
        await log.publishCheckpoint();
        assert.deepEqual((await log.checkConsistency()).problems, []);

        // 1. An insider edits entry 42's text.
        const leaf42 = await log.getEntry(42);
        await rawSql(
          store,
          `UPDATE audit_entries SET leaf = '${leaf42.replace('device-42', 'device-99').replace(/'/g, "''")}' WHERE idx = 42`,
        );
        const r1 = await log.checkConsistency();
        assert.ok(
          r1.problems.some((p) => /entry 42 does not match/.test(p)),
          r1.problems.join('; '),
        );
        assert.ok(r1.problems.some((p) => /root signed at size 100/.test(p)));
        // ...and a client checking entry 42's inclusion proof sees it.
        const p42 = await log.inclusionProof(42);
        const cp = await log.latestCheckpoint();
        assert.ok(!verifyInclusion(hashLeaf(Buffer.from(p42.leaf)), 42, 100, p42.proof, cp!.root));
        await rawSql(store, `UPDATE audit_entries SET leaf = '${leaf42.replace(/'/g, "''")}' WHERE idx = 42`);
        assert.deepEqual((await log.checkConsistency()).problems, []);

        // 2. An entry row is deleted (the check stops at the hole; so do proofs of the range).
        await rawSql(store, 'DELETE FROM audit_entries WHERE idx = 17');
        const r2 = await log.checkConsistency();
        assert.ok(
          r2.problems.some((p) => /entries 17\.\.17 are missing/.test(p)),
          r2.problems.join('; '),
        );
        await assert.rejects(log.getEntries(0, 100), (e: unknown) => isEdgeguardError(e, 'EG_AUDIT_INCONSISTENT'));

        // 3. An interior node off every proof path is rewritten: the full check names it.
        await rawSql(store, "UPDATE audit_nodes SET hash = '" + 'ee'.repeat(32) + "' WHERE level = 3 AND idx = 1");
        const r3 = await log.checkConsistency();
        assert.ok(
          r3.problems.some((p) => /tree node 3\/1 was altered/.test(p)),
          r3.problems.join('; '),
        );

        // 4. An interior node on the tree's right edge is rewritten: the next checkpoint is refused.
        await log.appendMany([ev(1000)]);
        await rawSql(store, "UPDATE audit_nodes SET hash = '" + 'ee'.repeat(32) + "' WHERE level = 6 AND idx = 0");
        await assert.rejects(log.publishCheckpoint(), (e: unknown) => isEdgeguardError(e, 'EG_AUDIT_INCONSISTENT'));
        assert.equal((await log.latestCheckpoint())?.size, 100, 'nothing new was signed');
        // A fresh process (no cached edge) also refuses to append onto the altered tree.
        const fresh = await AuditLog.open(store, {
          signer: generateLogSigner('edgeguard.test/audit'),
          checkpointIntervalMs: 0,
        });
        await assert.rejects(fresh.append(ev(2000)), (e: unknown) => isEdgeguardError(e, 'EG_AUDIT_INCONSISTENT'));
        await log.close();
      } finally {
        await cleanup();
      }
    });

    test('a witness following the stored log accepts growth and catches a rewritten history', async () => {
      const { store, cleanup } = await backend.open();
      try {
        const signer = generateLogSigner('edgeguard.test/audit');
        const log = await AuditLog.open(store, { signer, checkpointIntervalMs: 0 });
        const w = await Witness.load(log.verifier);
        const fetch = (a: number, b: number) => log.consistencyProof(a, b);
        await log.appendMany(Array.from({ length: 10 }, (_, i) => ev(i)));
        await w.observe((await log.publishCheckpoint()).note, fetch);
        await log.appendMany(Array.from({ length: 10 }, (_, i) => ev(10 + i)));
        assert.equal((await w.observe((await log.publishCheckpoint()).note, fetch)).change, 'grew');
        // The insider has the key, wipes the tables and rebuilds a different history of 25 entries.
        for (const t of ['audit_entries', 'audit_nodes', 'audit_checkpoints']) await rawSql(store, `DELETE FROM ${t}`);
        await rawSql(
          store,
          "UPDATE audit_state SET size = 0, root = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'",
        );
        const rebuilt = await AuditLog.open(store, { signer, checkpointIntervalMs: 0 });
        await rebuilt.appendMany(Array.from({ length: 25 }, (_, i) => ev(500 + i)));
        await assert.rejects(w.observe((await rebuilt.publishCheckpoint()).note, fetch), (e: unknown) =>
          isEdgeguardError(e, 'EG_AUDIT_INCONSISTENT'),
        );
        await rebuilt.close();
        await log.close();
      } finally {
        await cleanup();
      }
    });
  });
}

test('two server processes append 20,000 entries concurrently to one PostgreSQL: none lost, one consistent tree', async () => {
  const db = await createTempDatabase('eg_audit_conc');
  try {
    // Migrate once here so the workers do not race on schema creation.
    const store = await Store.open({ url: db.url });
    const worker = join(import.meta.dirname, 'append-worker.ts');
    const signer = generateLogSigner('edgeguard.test/audit');
    const env = {
      ...process.env,
      EG_TEST_LOG_KEY: Buffer.from(signer.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()).toString(
        'base64',
      ),
    };
    const spawnWorker = (name: string) =>
      run(process.execPath, ['--import', 'tsx', worker, db.url, name, '10000'], { timeout: 120_000, env });
    const [a, b] = await Promise.all([spawnWorker('w1'), spawnWorker('w2')]);
    for (const r of [a, b]) {
      const out = JSON.parse(r.stdout);
      assert.equal(out.appended, 10000);
      assert.deepEqual(out.alarms, [], 'no replica raised an alarm while the other appended and signed');
    }
    const log = await AuditLog.open(store, { signer, checkpointIntervalMs: 0 });
    // Every checkpoint either replica signed is consistent with every later one.
    const cps = (
      await sql<{
        size: string | number;
        root: string;
      }>`select size, root from audit_checkpoints order by size`.execute(store.db)
    ).rows;
    assert.ok(cps.length >= 2, `${cps.length} checkpoints signed`);
    for (let i = 1; i < cps.length; i++) {
      const s1 = Number(cps[i - 1]!.size);
      const s2 = Number(cps[i]!.size);
      assert.ok(
        verifyConsistency(
          s1,
          s2,
          await log.consistencyProof(s1, s2),
          Buffer.from(cps[i - 1]!.root, 'hex'),
          Buffer.from(cps[i]!.root, 'hex'),
        ),
        `${s1} -> ${s2}`,
      );
    }
    assert.equal(await log.size(), 20000);
    const report = await log.checkConsistency();
    assert.deepEqual(report.problems, []);
    // Every event of both workers is there exactly once, and their batches interleaved.
    const subjects = new Set<string>();
    const owners: string[] = [];
    for (let i = 0; i < 20000; i += 5000) {
      for (const leaf of await log.getEntries(i, i + 5000)) {
        const e = decodeLogLeaf(Buffer.from(leaf)).event;
        subjects.add(e.subject as string);
        owners.push(e.actor.id);
      }
    }
    assert.equal(subjects.size, 20000);
    let switches = 0;
    for (let i = 1; i < owners.length; i++) if (owners[i] !== owners[i - 1]) switches += 1;
    assert.ok(switches >= 1, 'the two processes wrote into the same tree');
    const cp = await log.publishCheckpoint();
    assert.equal(cp.size, 20000);
    const p = await log.inclusionProof(12345);
    assert.ok(verifyInclusion(p.leafHash, 12345, 20000, p.proof, cp.root));
    await log.close();
    await store.close();
  } finally {
    await db.drop();
  }
});

test('journal records forwarded from a file parse back into the same entries', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'eg-audit-fwd-'));
  try {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const path = join(dir, 'j');
    const j = await Journal.open(path, journalSignerFromKey(privateKey), publicKey);
    await j.append([ev(1), ev(2)]);
    const parsed = parseJournal(readFileSync(path));
    assert.equal(parsed.entries.length, 2);
    writeFileSync(
      join(dir, 'copy'),
      Buffer.concat([JOURNAL_MAGIC, ...parsed.entries.map((e) => encodeJournalRecord(e))]),
    );
    assert.deepEqual(readFileSync(join(dir, 'copy')), readFileSync(path));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
