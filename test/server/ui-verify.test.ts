/**
 * The dashboard's browser-side checks (ui/verify.js), run here on Node's WebCrypto against the
 * server's own code: inclusion proofs from src/audit/merkle.ts for every tree shape, checkpoints
 * signed by src/audit/note.ts with keys whose base64 holds "+" and "/", and what must fail (a
 * changed leaf, a proof too short or too long, another key, a changed checkpoint).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { formatVerifierKey, noteSigner, signNote } from '../../src/audit/index.ts';
import { hashLeaf, rootFromLeafHashes, splitPoint } from '../../src/audit/merkle.ts';
import {
  openNote,
  parseCheckpoint,
  parseVerifierKey,
  rootFromInclusionProof,
  verifyConsistency,
} from '../../ui/verify.js';

/** RFC 9162 section 2.1.3.1 PATH(m, D[n]), written from the definition. */
function path(m: number, leaves: readonly Buffer[]): Buffer[] {
  if (leaves.length <= 1) return [];
  const k = splitPoint(leaves.length);
  return m < k
    ? [...path(m, leaves.slice(0, k)), rootFromLeafHashes(leaves.slice(k))]
    : [...path(m - k, leaves.slice(k)), rootFromLeafHashes(leaves.slice(0, k))];
}

/** RFC 9162 section 2.1.4.1 PROOF(m, D[n]) = SUBPROOF(m, D[n], true), from the definition. */
function subproof(m: number, leaves: readonly Buffer[], whole: boolean): Buffer[] {
  const n = leaves.length;
  if (m === n) return whole ? [] : [rootFromLeafHashes(leaves)];
  const k = splitPoint(n);
  return m <= k
    ? [...subproof(m, leaves.slice(0, k), whole), rootFromLeafHashes(leaves.slice(k))]
    : [...subproof(m - k, leaves.slice(k), false), rootFromLeafHashes(leaves.slice(0, k))];
}

/** A signer whose verifier key string has both "+" and "/" in its base64 part. */
function awkwardSigner() {
  for (;;) {
    const s = noteSigner('log.example/audit', generateKeyPairSync('ed25519').privateKey);
    const key = formatVerifierKey(s).split('+').slice(2).join('+');
    if (key.includes('+') && key.includes('/')) return s;
  }
}

describe('dashboard proof checks (ui/verify.js)', () => {
  it('leads every inclusion proof of the server to its root, and no altered one', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 70 }), fc.nat(), async (size, pick) => {
        const leaves = Array.from({ length: size }, (_, i) => hashLeaf(Buffer.from(`entry ${i}`)));
        const root = rootFromLeafHashes(leaves);
        const index = pick % size;
        const proof = path(index, leaves);
        const got = await rootFromInclusionProof(index, size, leaves[index]!, proof);
        assert.deepEqual(Buffer.from(got), root);
        const other = hashLeaf(Buffer.from('altered'));
        assert.notDeepEqual(Buffer.from(await rootFromInclusionProof(index, size, other, proof)), root);
        if (proof.length > 0)
          await assert.rejects(rootFromInclusionProof(index, size, leaves[index]!, proof.slice(1)), /too short/);
        await assert.rejects(
          rootFromInclusionProof(index, size, leaves[index]!, [...proof, randomBytes(32)]),
          /too long/,
        );
        await assert.rejects(rootFromInclusionProof(size, size, leaves[index]!, proof), /outside the tree/);
      }),
      { numRuns: 200 },
    );
  });

  it('accepts every consistency proof between two sizes of one log, and refuses a rewritten or shrunk log', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 2, max: 70 }), fc.nat(), async (size2, pick) => {
        const leaves = Array.from({ length: size2 }, (_, i) => hashLeaf(Buffer.from(`entry ${i}`)));
        const size1 = 1 + (pick % (size2 - 1));
        const root1 = rootFromLeafHashes(leaves.slice(0, size1));
        const root2 = rootFromLeafHashes(leaves);
        const proof = subproof(size1, leaves, true);
        await verifyConsistency(size1, root1, size2, root2, proof);
        const forked = [...leaves];
        forked[pick % size1] = hashLeaf(Buffer.from('rewritten'));
        await assert.rejects(verifyConsistency(size1, root1, size2, rootFromLeafHashes(forked), proof));
        await assert.rejects(verifyConsistency(size2, root2, size1, root1, proof), /shrank/);
        await assert.rejects(verifyConsistency(size1, root1, size2, root2, proof.slice(1)));
      }),
      { numRuns: 200 },
    );
  });

  it('opens a checkpoint signed by the pinned key (base64 with "+"), and refuses another key or a changed body', async () => {
    const signer = awkwardSigner();
    const body = `log.example/audit\n13\n${randomBytes(32).toString('base64')}\n`;
    const note = signNote(body, [signer]);
    const verifier = await parseVerifierKey(formatVerifierKey(signer));
    const text = await openNote(note, verifier);
    assert.equal(text, body);
    const cp = parseCheckpoint(text);
    assert.equal(cp.size, 13);
    assert.equal(cp.root.length, 32);

    const stranger = noteSigner('log.example/audit', generateKeyPairSync('ed25519').privateKey);
    await assert.rejects(openNote(signNote(body, [stranger]), verifier), /no signature by the pinned log key/);
    await assert.rejects(openNote(note.replace('\n13\n', '\n14\n'), verifier), /does not verify/);
    await assert.rejects(parseVerifierKey(formatVerifierKey(signer).replace(/\+[0-9a-f]{8}\+/, '+00000000+')), /id/);
    await assert.rejects(parseVerifierKey('not a key'), /not name\+keyid\+key/);
  });
});
