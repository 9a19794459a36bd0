import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isEdgeguardError } from '../../src/errors/index.ts';
import { signCheckpoint } from '../../src/audit/checkpoint.ts';
import { MemoryNodeStore, consistencyProof } from '../../src/audit/merkle.ts';
import { noteSigner, noteVerifier } from '../../src/audit/note.ts';
import { Witness } from '../../src/audit/witness.ts';

const ORIGIN = 'edgeguard.test/audit';

function log(prefix = 'e', signer = noteSigner(ORIGIN, generateKeyPairSync('ed25519').privateKey)) {
  const store = new MemoryNodeStore();
  return {
    store,
    signer,
    add(n: number) {
      for (let i = 0; i < n; i++) store.appendLeaf(Buffer.from(`${prefix}${store.size}`));
    },
    checkpoint() {
      return signCheckpoint({ origin: ORIGIN, size: store.size, rootHash: store.root(), extensions: [] }, signer);
    },
    proofs: (s1: number, s2: number) => consistencyProof(store, s1, s2),
  };
}

const inconsistent = (e: unknown) => isEdgeguardError(e, 'EG_AUDIT_INCONSISTENT');

test('the witness trusts on first use, then accepts only consistent growth, and persists its state', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'eg-witness-'));
  try {
    const l = log();
    const key = noteVerifier(l.signer.name, l.signer.publicKey);
    const state = join(dir, 'trusted.checkpoint');
    const w = await Witness.load(key, state);
    l.add(5);
    assert.equal((await w.observe(l.checkpoint(), l.proofs)).change, 'first');
    l.add(12);
    const up = await w.observe(l.checkpoint(), l.proofs);
    assert.deepEqual([up.change, up.previousSize, up.checkpoint.checkpoint.size], ['grew', 5, 17]);
    assert.equal((await w.observe(l.checkpoint(), l.proofs)).change, 'same');
    assert.equal(readFileSync(state, 'utf8'), l.checkpoint());
    const reloaded = await Witness.load(key, state);
    assert.equal(reloaded.last?.checkpoint.size, 17);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a fork (same key, rewritten history) raises EG_AUDIT_INCONSISTENT and keeps the old trust', async () => {
  const honest = log();
  honest.add(8);
  const w = await Witness.load(noteVerifier(honest.signer.name, honest.signer.publicKey));
  await w.observe(honest.checkpoint(), honest.proofs);
  // The same log key signs a tree whose entry 3 was rewritten.
  const forked = log('x', honest.signer);
  forked.add(8);
  await assert.rejects(
    w.observe(forked.checkpoint(), forked.proofs),
    (e: unknown) => inconsistent(e) && /fork/.test((e as Error).message),
  );
  forked.add(4);
  await assert.rejects(
    w.observe(forked.checkpoint(), forked.proofs),
    (e: unknown) => inconsistent(e) && /fork/.test((e as Error).message),
  );
  assert.equal(w.last?.checkpoint.size, 8);
  // The honest log still gets through.
  honest.add(4);
  assert.equal((await w.observe(honest.checkpoint(), honest.proofs)).change, 'grew');
});

test('a rollback to a smaller tree is an alarm; a log that cannot prove growth is an alarm', async () => {
  const l = log();
  l.add(3);
  const small = l.checkpoint();
  l.add(3);
  const w = await Witness.load(noteVerifier(l.signer.name, l.signer.publicKey));
  await w.observe(l.checkpoint(), l.proofs);
  await assert.rejects(
    w.observe(small, l.proofs),
    (e: unknown) => inconsistent(e) && /rollback/.test((e as Error).message),
  );
  l.add(1);
  await assert.rejects(
    w.observe(l.checkpoint(), async () => {
      throw new Error('connection reset');
    }),
    inconsistent,
  );
  await assert.rejects(
    w.observe(l.checkpoint(), async (a, b) => (await l.proofs(a, b)).slice(1)),
    inconsistent,
  );
});

test('checkpoints not signed by the log key are refused before any comparison', async () => {
  const l = log();
  const other = log();
  l.add(2);
  other.add(2);
  const w = await Witness.load(noteVerifier(l.signer.name, l.signer.publicKey));
  await assert.rejects(w.observe(other.checkpoint(), other.proofs), (e: unknown) =>
    isEdgeguardError(e, 'EG_SIGNATURE_MISMATCH'),
  );
  assert.equal(w.last, undefined);
});
