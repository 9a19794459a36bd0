import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { sql } from 'kysely';
import {
  AuditLog,
  Journal,
  journalSignerFromKey,
  loadOrCreateLogSigner,
  type AuditEvent,
} from '../../src/audit/index.ts';
import { Store } from '../../src/store/index.ts';

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

const ev = (i: number): AuditEvent => ({
  type: 'device.revoked',
  time: '2026-11-25T20:00:00.000Z',
  actor: { kind: 'admin', id: 'alice' },
  subject: `dev-${i}`,
  outcome: 'success',
  details: { deviceId: `dev-${i}`, reason: 'lost', revokedSerials: [] },
});

test('audit CLI against a server data directory: checkpoint, prove, verify, watch, and the alarms', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'eg-audit-cli-'));
  try {
    const signer = await loadOrCreateLogSigner(dir, 'edgeguard.test/audit');
    const store = await Store.open({ dataDir: dir });
    let log = await AuditLog.open(store, { signer, checkpointIntervalMs: 0 });
    await log.appendMany(Array.from({ length: 12 }, (_, i) => ev(i)));
    await log.publishCheckpoint();

    const cp = await cli(['--json', 'audit', 'checkpoint', '--data', dir]);
    assert.equal(cp.code, 0, cp.stderr);
    assert.equal(JSON.parse(cp.stdout).size, 12);

    const prove = await cli(['--json', 'audit', 'prove', '7', '--data', dir]);
    assert.equal(prove.code, 0, prove.stderr);
    const p = JSON.parse(prove.stdout);
    assert.equal(p.entry.event.subject, 'dev-7');
    assert.equal(p.proof.length, 4);
    const human = await cli(['audit', 'prove', '7', '--data', dir]);
    assert.match(human.stdout, /inclusion proof \(4 hashes\) verified/);
    const missing = await cli(['audit', 'prove', '12', '--data', dir]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /^EG_NOT_FOUND: entry 12 is not covered/);

    const state = join(dir, 'trusted.checkpoint');
    const v1 = await cli(['--json', 'audit', 'verify', '--data', dir, '--state', state, '--full']);
    assert.equal(v1.code, 0, v1.stderr);
    assert.equal(JSON.parse(v1.stdout).change, 'first');
    await log.appendMany(Array.from({ length: 5 }, (_, i) => ev(100 + i)));
    await log.publishCheckpoint();
    const v2 = await cli(['audit', 'verify', '--data', dir, '--state', state]);
    assert.equal(v2.code, 0, v2.stderr);
    assert.match(v2.stdout, /consistent: the log grew from 12 to 17 entries/);
    const w = await cli([
      '--json',
      'audit',
      'watch',
      '--data',
      dir,
      '--state',
      state,
      '--count',
      '2',
      '--interval',
      '0.1',
    ]);
    assert.equal(w.code, 0, w.stderr);
    assert.equal(JSON.parse(w.stdout).size, 17);

    // An insider edits a stored entry: the full check fails with exit status 8.
    await sql.raw("UPDATE audit_entries SET leaf = replace(leaf, 'lost', 'sold') WHERE idx = 3").execute(store.db);
    const full = await cli(['audit', 'verify', '--data', dir, '--state', state, '--full']);
    assert.equal(full.code, 8, full.stderr);
    assert.match(full.stderr, /^EG_AUDIT_INCONSISTENT: .*entry 3/);
    const badProof = await cli(['audit', 'prove', '3', '--data', dir]);
    assert.equal(badProof.code, 8);

    // The insider, holding the log key, rewrites history from scratch: the watcher alarms.
    // (The store stays open: the CLI processes migrated it with every module's migrations, which
    // this process does not all register, so a fresh Store.open here would refuse it.)
    await log.close();
    for (const t of ['audit_entries', 'audit_nodes', 'audit_checkpoints'])
      await sql.raw(`DELETE FROM ${t}`).execute(store.db);
    await sql
      .raw("UPDATE audit_state SET size = 0, root = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'")
      .execute(store.db);
    log = await AuditLog.open(store, { signer, checkpointIntervalMs: 0 });
    await log.appendMany(Array.from({ length: 20 }, (_, i) => ev(500 + i)));
    await log.publishCheckpoint();
    const fork = await cli(['audit', 'watch', '--data', dir, '--state', state, '--count', '1']);
    assert.equal(fork.code, 8, fork.stderr);
    assert.match(fork.stderr, /^EG_AUDIT_INCONSISTENT: fork/);
    const evidenceFile = /Evidence saved in (\S+)\.\n/.exec(fork.stderr)?.[1];
    assert.ok(evidenceFile, fork.stderr);
    const evidence = JSON.parse(readFileSync(evidenceFile, 'utf8'));
    assert.match(evidence.trusted, /^edgeguard\.test\/audit\n17\n/);
    assert.match(evidence.received, /^edgeguard\.test\/audit\n20\n/);
    await log.close();
    await store.close();

    // No source, or no key: usage errors.
    assert.equal((await cli(['audit', 'checkpoint'])).code, 2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('audit journal reports a deleted entry with its position', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'eg-audit-cli-j-'));
  try {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    writeFileSync(join(dir, 'device.pub'), publicKey.export({ type: 'spki', format: 'pem' }));
    const path = join(dir, 'audit.journal');
    const j = await Journal.open(path, journalSignerFromKey(privateKey), publicKey);
    await j.append([0, 1, 2, 3].map((i) => ev(i)));
    const ok = await cli(['audit', 'journal', path, '--device-key', join(dir, 'device.pub')]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /4 entries, chain and signatures intact/);
    const bytes = readFileSync(path);
    // Cut out the second record.
    const first = 8 + 4 + bytes.readUInt32BE(8);
    const second = first + 4 + bytes.readUInt32BE(first);
    writeFileSync(path, Buffer.concat([bytes.subarray(0, first), bytes.subarray(second)]));
    const bad = await cli(['audit', 'journal', path, '--device-key', join(dir, 'device.pub')]);
    assert.equal(bad.code, 8, 'an audit problem exits 8, as the README says');
    assert.match(bad.stderr, /^EG_AUDIT_INCONSISTENT: .*at position 1 \(missing\)/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
