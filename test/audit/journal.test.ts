import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { isEdgeguardError } from '../../src/errors/index.ts';
import type { AuditEvent } from '../../src/audit/events.ts';
import {
  JOURNAL_MAGIC,
  Journal,
  checkJournalBytes,
  encodeJournalRecord,
  journalSignerFromKey,
  parseJournal,
} from '../../src/audit/journal.ts';

function ev(i: number): AuditEvent {
  return {
    type: 'guard.flagged',
    time: new Date(Date.UTC(2026, 10, 25, 20, 0, 0, i)).toISOString(),
    actor: { kind: 'device', id: 'dev-1' },
    outcome: 'failure',
    details: { check: 'confidence', score: 400_000 + i, threshold: 500_000 },
  };
}

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'eg-journal-'));
}

for (const type of ['ed25519', 'ec'] as const) {
  test(`journal (${type}): batches append, reopen and check clean`, async () => {
    const dir = tmp();
    try {
      const { privateKey, publicKey } =
        type === 'ed25519' ? generateKeyPairSync('ed25519') : generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const path = join(dir, 'audit.journal');
      const j = await Journal.open(path, journalSignerFromKey(privateKey), publicKey);
      const a = await j.append([ev(0), ev(1), ev(2)]);
      const b = await j.append([ev(3)]);
      assert.deepEqual(
        [...a, ...b].map((e) => e.seq),
        [0, 1, 2, 3],
      );
      assert.ok((b[0]?.prev as Buffer).equals(a[2]?.hash as Buffer));
      const again = await Journal.open(path, journalSignerFromKey(privateKey), publicKey);
      assert.equal(again.lastSeq, 3);
      await again.append([ev(4)]);
      const check = checkJournalBytes(readFileSync(path), publicKey);
      assert.deepEqual(check.gaps, []);
      assert.equal(check.entries.length, 5);
      assert.deepEqual(check.entries[4]?.event, ev(4));
      assert.equal((await again.readFrom(3)).length, 2);
      // Another key does not verify the chain.
      const other =
        type === 'ed25519'
          ? generateKeyPairSync('ed25519').publicKey
          : generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
      assert.equal(checkJournalBytes(readFileSync(path), other).gaps.length, 5);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

/** Split a journal file into its records (length prefix included). */
function records(bytes: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let at = JOURNAL_MAGIC.length;
  while (at < bytes.length) {
    const len = bytes.readUInt32BE(at);
    out.push(bytes.subarray(at, at + 4 + len));
    at += 4 + len;
  }
  return out;
}

async function sixEntryJournal() {
  const dir = tmp();
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const path = join(dir, 'audit.journal');
  const j = await Journal.open(path, journalSignerFromKey(privateKey), publicKey);
  await j.append([0, 1, 2, 3, 4, 5].map(ev));
  return { dir, path, privateKey, publicKey, bytes: readFileSync(path) };
}

test('a deleted entry is reported as a gap with its position, and reopening fails closed', async () => {
  const { dir, path, privateKey, publicKey, bytes } = await sixEntryJournal();
  try {
    const recs = records(bytes);
    writeFileSync(path, Buffer.concat([JOURNAL_MAGIC, ...recs.filter((_, i) => i !== 3)]));
    const { gaps } = checkJournalBytes(readFileSync(path), publicKey);
    assert.equal(gaps.length, 1);
    assert.deepEqual(
      {
        position: gaps[0]?.position,
        expectedSeq: gaps[0]?.expectedSeq,
        foundSeq: gaps[0]?.foundSeq,
        kind: gaps[0]?.kind,
      },
      { position: 3, expectedSeq: 3, foundSeq: 4, kind: 'missing' },
    );
    await assert.rejects(
      Journal.open(path, journalSignerFromKey(privateKey), publicKey),
      (e: unknown) => isEdgeguardError(e, 'EG_TAMPERED') && /entry 3/.test(e.message),
    );
    // Deleting the first entries is also a gap, at position 0.
    writeFileSync(path, Buffer.concat([JOURNAL_MAGIC, ...recs.slice(2)]));
    const head = checkJournalBytes(readFileSync(path), publicKey).gaps;
    assert.deepEqual([head[0]?.position, head[0]?.expectedSeq, head[0]?.foundSeq], [0, 0, 2]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an altered entry is reported at its position; a re-signed replacement breaks the chain', async () => {
  const { dir, privateKey, publicKey, bytes } = await sixEntryJournal();
  try {
    const recs = records(bytes);
    // Flip one byte of entry 2's payload.
    const altered = Buffer.from(recs[2] as Buffer);
    flip(altered, 4 + 53 + 10, 0x01);
    const g1 = checkJournalBytes(
      Buffer.concat([JOURNAL_MAGIC, ...recs.slice(0, 2), altered, ...recs.slice(3)]),
      publicKey,
    ).gaps;
    assert.equal(g1.length, 1);
    assert.equal(g1[0]?.position, 2);
    assert.ok(g1[0]?.kind === 'altered' || g1[0]?.kind === 'damaged');
    // An attacker with the key rewrites entry 2 with other content: the chain still shows it.
    const parsed = parseJournal(bytes).entries;
    const e2 = parsed[2]!;
    const { encodeJournalBody } = await import('../../src/audit/journal.ts');
    const body = encodeJournalBody(2, e2.prev, e2.timeMs, ev(99));
    const forged = encodeJournalRecord({
      body,
      alg: 'ed25519',
      signature: journalSignerFromKey(privateKey).sign(body) as Buffer,
    });
    const g2 = checkJournalBytes(
      Buffer.concat([JOURNAL_MAGIC, ...recs.slice(0, 2), forged, ...recs.slice(3)]),
      publicKey,
    ).gaps;
    assert.deepEqual(
      g2.map((g) => [g.position, g.kind]),
      [[3, 'altered']],
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a torn final write is reported as damage after the last good entry', async () => {
  const { dir, publicKey, bytes } = await sixEntryJournal();
  try {
    const { gaps, entries } = checkJournalBytes(bytes.subarray(0, bytes.length - 7), publicKey);
    assert.equal(entries.length, 5);
    assert.deepEqual([gaps[0]?.position, gaps[0]?.kind], [5, 'damaged']);
    assert.throws(
      () => parseJournal(Buffer.from('not a journal')),
      (e: unknown) => isEdgeguardError(e, 'EG_FORMAT'),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('property: any single-byte change to a journal is detected', async () => {
  const { dir, publicKey, bytes } = await sixEntryJournal();
  try {
    fc.assert(
      fc.property(
        fc.integer({ min: JOURNAL_MAGIC.length, max: bytes.length - 1 }),
        fc.integer({ min: 1, max: 255 }),
        (pos, delta) => {
          const bad = Buffer.from(bytes);
          bad[pos] = ((bad[pos] as number) + delta) % 256;
          const r = checkJournalBytes(bad, publicKey);
          assert.ok(r.gaps.length > 0, `change at ${pos} undetected`);
        },
      ),
      { numRuns: 300 },
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('property: arbitrary bytes after the magic never crash the parser', () => {
  const { publicKey } = generateKeyPairSync('ed25519');
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 500 }), (tail) => {
      const r = checkJournalBytes(Buffer.concat([JOURNAL_MAGIC, tail]), publicKey);
      if (tail.length > 0) assert.ok(r.gaps.length > 0);
    }),
    { numRuns: 500 },
  );
});

function flip(buf: Buffer, at: number, mask: number): void {
  buf[at] = (buf[at] ?? 0) ^ mask;
}
