import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import {
  CompactRange,
  EMPTY_ROOT,
  MemoryNodeStore,
  consistencyProof,
  hashChildren,
  hashLeaf,
  inclusionProof,
  rangeNodes,
  rootFromLeafHashes,
  treeRoot,
  verifyConsistency,
  verifyInclusion,
} from '../../src/audit/merkle.ts';

const h = (hex: string) => Buffer.from(hex, 'hex');

// Test vectors of RFC 6962 / RFC 9162 trees as published with transparency-dev/merkle
// (proof/verify_test.go): eight leaves, the roots of the trees of sizes 1..8.
const LEAVES = ['', '00', '10', '2021', '3031', '40414243', '5051525354555657', '606162636465666768696a6b6c6d6e6f'].map(
  h,
);
const ROOTS = [
  '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
  'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
  'aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77',
  'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
  '4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4',
  '76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef',
  'ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c',
  '5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328',
].map(h);
// {leaf index (0-based), tree size, proof}
const INCLUSION: Array<[number, number, string[]]> = [
  [
    0,
    8,
    [
      '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
    ],
  ],
  [
    5,
    8,
    [
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
      'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ],
  ],
  [2, 3, ['fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125']],
  [
    1,
    5,
    [
      '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
    ],
  ],
];
const CONSISTENCY: Array<[number, number, string[]]> = [
  [
    1,
    8,
    [
      '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
    ],
  ],
  [
    6,
    8,
    [
      '0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a',
      'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ],
  ],
  [
    2,
    5,
    [
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
    ],
  ],
  [
    6,
    7,
    [
      '0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a',
      'b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ],
  ],
];

/** MTH straight from the RFC's recursive definition, independent of the code under test. */
function referenceRoot(leaves: readonly Uint8Array[]): Buffer {
  if (leaves.length === 0) return createHash('sha256').digest();
  if (leaves.length === 1)
    return createHash('sha256')
      .update(Buffer.from([0]))
      .update(leaves[0] as Uint8Array)
      .digest();
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return createHash('sha256')
    .update(Buffer.from([1]))
    .update(referenceRoot(leaves.slice(0, k)))
    .update(referenceRoot(leaves.slice(k)))
    .digest();
}

function storeOf(leaves: readonly Uint8Array[]): MemoryNodeStore {
  const store = new MemoryNodeStore();
  for (const l of leaves) store.appendLeaf(l);
  return store;
}

test('empty tree root is SHA-256 of the empty string', () => {
  assert.equal(EMPTY_ROOT.toString('hex'), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  assert.deepEqual(rootFromLeafHashes([]), EMPTY_ROOT);
});

test('roots of the published trees of sizes 1..8', async () => {
  for (let n = 1; n <= 8; n++) {
    const store = storeOf(LEAVES.slice(0, n));
    assert.equal(store.root().toString('hex'), (ROOTS[n - 1] as Buffer).toString('hex'), `size ${n}`);
    assert.deepEqual(await treeRoot(storeOf(LEAVES), n), ROOTS[n - 1], `size ${n} from the 8-leaf store`);
  }
});

test('published inclusion proofs are generated and verify; every one-bit change fails', async () => {
  const store = storeOf(LEAVES);
  for (const [index, size, proofHex] of INCLUSION) {
    const proof = await inclusionProof(store, index, size);
    assert.deepEqual(
      proof.map((p) => p.toString('hex')),
      proofHex,
      `leaf ${index} size ${size}`,
    );
    const leafHash = hashLeaf(LEAVES[index] as Buffer);
    const root = ROOTS[size - 1] as Buffer;
    assert.ok(verifyInclusion(leafHash, index, size, proof, root));
    assert.ok(!verifyInclusion(leafHash, index + 1, size, proof, root));
    assert.ok(!verifyInclusion(leafHash, index, size * 2, proof, root));
    assert.ok(!verifyInclusion(leafHash, index, size, [...proof, root], root), 'trailing hash');
    assert.ok(!verifyInclusion(leafHash, index, size, [root, ...proof], root), 'preceding hash');
    assert.ok(!verifyInclusion(leafHash, index, size, proof.slice(0, -1), root), 'truncated');
    assert.ok(!verifyInclusion(leafHash, index, size, proof, EMPTY_ROOT), 'wrong root');
    for (let i = 0; i < proof.length; i++) {
      const bad = proof.map((p) => Buffer.from(p));
      flip(bad[i] as Buffer, 0, 8);
      assert.ok(!verifyInclusion(leafHash, index, size, bad, root), `bit flip in proof[${i}]`);
    }
  }
});

test('published consistency proofs are generated and verify; corruptions fail', async () => {
  const store = storeOf(LEAVES);
  for (const [size1, size2, proofHex] of CONSISTENCY) {
    const proof = await consistencyProof(store, size1, size2);
    assert.deepEqual(
      proof.map((p) => p.toString('hex')),
      proofHex,
      `${size1} -> ${size2}`,
    );
    const r1 = ROOTS[size1 - 1] as Buffer;
    const r2 = ROOTS[size2 - 1] as Buffer;
    assert.ok(verifyConsistency(size1, size2, proof, r1, r2));
    assert.ok(!verifyConsistency(size1, size2, proof, r2, r1), 'swapped roots');
    assert.ok(!verifyConsistency(size1 + 1, size2, proof, r1, r2));
    assert.ok(!verifyConsistency(size1, size2 * 2, proof, r1, r2));
    assert.ok(!verifyConsistency(size1, size2, [], r1, r2), 'empty proof');
    assert.ok(!verifyConsistency(size1, size2, [...proof, r1], r1, r2), 'trailing root');
    assert.ok(!verifyConsistency(size1, size2, [proof[0] as Buffer, ...proof], r1, r2), 'preceding proof[0]');
    assert.ok(!verifyConsistency(size1, size2, proof.slice(0, -1), r1, r2), 'truncated');
    for (let i = 0; i < proof.length; i++) {
      const bad = proof.map((p) => Buffer.from(p));
      flip(bad[i] as Buffer, 0, 16);
      assert.ok(!verifyConsistency(size1, size2, bad, r1, r2), `bit flip in proof[${i}]`);
    }
  }
});

test('trivial consistency cases follow RFC 9162 2.1.4.2', () => {
  const a = ROOTS[0] as Buffer;
  const b = ROOTS[1] as Buffer;
  assert.ok(verifyConsistency(0, 0, [], a, a));
  assert.ok(verifyConsistency(0, 5, [], a, b));
  assert.ok(verifyConsistency(1, 1, [], b, b));
  assert.ok(!verifyConsistency(1, 1, [], a, b), 'same size, different roots: a fork');
  assert.ok(!verifyConsistency(1, 1, [EMPTY_ROOT], b, b), 'same size needs an empty proof');
  assert.ok(!verifyConsistency(2, 1, [], a, b), 'rollback');
});

test('the 7-leaf tree of RFC 9162 2.1.5: inclusion of d0 is [b, h, l], consistency 3 -> 7 is [c, d, g, l]', async () => {
  const d = LEAVES.slice(0, 7);
  const [a, b, c, dd, e, f, j] = d.map((x) => hashLeaf(x)) as [Buffer, Buffer, Buffer, Buffer, Buffer, Buffer, Buffer];
  const g = hashChildren(a, b);
  const hh = hashChildren(c, dd);
  const i = hashChildren(e, f);
  const k = hashChildren(g, hh);
  const l = hashChildren(i, j);
  const root = hashChildren(k, l);
  assert.deepEqual(root, ROOTS[6]);
  const store = storeOf(d);
  assert.deepEqual(await inclusionProof(store, 0, 7), [b, hh, l]);
  assert.deepEqual(await inclusionProof(store, 3, 7), [c, g, l]);
  assert.deepEqual(await inclusionProof(store, 4, 7), [f, j, k]);
  assert.deepEqual(await inclusionProof(store, 6, 7), [i, k]);
  assert.deepEqual(await consistencyProof(store, 3, 7), [c, dd, g, l]);
  assert.deepEqual(await consistencyProof(store, 4, 7), [l]);
  assert.deepEqual(await consistencyProof(store, 6, 7), [i, j, k]);
  assert.ok(verifyConsistency(3, 7, [c, dd, g, l], ROOTS[2] as Buffer, root));
  assert.ok(verifyInclusion(a, 0, 7, [b, hh, l], root));
});

test('rangeNodes splits a range into aligned complete subtrees', () => {
  assert.deepEqual(rangeNodes(0, 7), [
    { level: 2, index: 0 },
    { level: 1, index: 2 },
    { level: 0, index: 6 },
  ]);
  assert.deepEqual(rangeNodes(8, 16), [{ level: 3, index: 1 }]);
  assert.deepEqual(rangeNodes(0, 0), []);
  // Large trees: at most log2(n)+1 nodes, no 32-bit overflow.
  const big = rangeNodes(0, 2 ** 40 + 2 ** 33 + 5);
  assert.deepEqual(
    big.map((n) => n.level),
    [40, 33, 2, 0],
  );
  assert.equal(big[1]?.index, 2 ** 7 + 0);
});

test('proof generation for large trees reads O(log n) nodes', async () => {
  const reads: number[] = [];
  const source = {
    async getNodes(ids: readonly { level: number; index: number }[]) {
      reads.push(ids.length);
      return ids.map(() => Buffer.alloc(32, 7));
    },
  };
  const n = 10_000_000;
  await inclusionProof(source, 1_234_567, n);
  await consistencyProof(source, 3_333_333, n);
  assert.equal(reads.length, 2, 'one batched read per proof');
  for (const r of reads) assert.ok(r <= 2 * Math.ceil(Math.log2(n)) + 2, `${r} nodes read`);
});

test('CompactRange resumed from stored edge nodes continues the same tree', async () => {
  const leaves = Array.from({ length: 37 }, (_, i) => Buffer.from(`leaf ${i}`));
  const full = storeOf(leaves);
  const first = storeOf(leaves.slice(0, 21));
  const edge = await first.getNodes(rangeNodes(0, 21));
  const resumed = CompactRange.fromNodes(21, edge);
  for (const l of leaves.slice(21)) resumed.append(hashLeaf(l));
  assert.deepEqual(resumed.root(), full.root());
  assert.throws(() => CompactRange.fromNodes(21, edge.slice(1)), /EG_AUDIT|edge nodes/);
});

test('property: roots match the recursive definition; every proof verifies; altered hashes fail', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.uint8Array({ maxLength: 12 }), { minLength: 1, maxLength: 70 }),
      fc.nat(),
      fc.nat(),
      fc.nat(),
      async (leaves, a, b, flipAt) => {
        const store = storeOf(leaves);
        const n = leaves.length;
        assert.deepEqual(store.root(), referenceRoot(leaves));
        const index = a % n;
        const size = index + 1 + (b % (n - index));
        const root = referenceRoot(leaves.slice(0, size));
        const leafHash = hashLeaf(leaves[index] as Uint8Array);
        const proof = await inclusionProof(store, index, size);
        assert.ok(proof.length <= Math.ceil(Math.log2(size)));
        assert.ok(verifyInclusion(leafHash, index, size, proof, root));
        const size1 = 1 + (a % size);
        const cproof = await consistencyProof(store, size1, size);
        const root1 = referenceRoot(leaves.slice(0, size1));
        assert.ok(cproof.length <= Math.ceil(Math.log2(size)) + 1);
        assert.ok(verifyConsistency(size1, size, cproof, root1, root));
        if (proof.length > 0) {
          const bad = proof.map((p) => Buffer.from(p));
          const bit = flipAt % (proof.length * 256);
          flip(bad[Math.floor(bit / 256)] as Buffer, Math.floor((bit % 256) / 8), 1 << (bit % 8));
          assert.ok(!verifyInclusion(leafHash, index, size, bad, root));
        }
        if (cproof.length > 0) {
          const bad = cproof.map((p) => Buffer.from(p));
          const bit = flipAt % (cproof.length * 256);
          flip(bad[Math.floor(bit / 256)] as Buffer, Math.floor((bit % 256) / 8), 1 << (bit % 8));
          assert.ok(!verifyConsistency(size1, size, bad, root1, root));
        }
        const badLeaf = Buffer.from(leafHash);
        flip(badLeaf, flipAt % 32, 1);
        assert.ok(!verifyInclusion(badLeaf, index, size, proof, root));
      },
    ),
    { numRuns: 300 },
  );
});

test('property: a tampered stored node changes the proofs so they no longer verify', async () => {
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 2, max: 64 }), fc.nat(), async (n, pick) => {
      const leaves = Array.from({ length: n }, (_, i) => Buffer.from([i, i >> 8]));
      const store = storeOf(leaves);
      const root = store.root();
      const index = pick % n;
      const proof = await inclusionProof(store, index, n);
      // Tamper with the first node the proof used: its leaf-level sibling range.
      const sibling = index % 2 === 0 ? index + 1 : index - 1;
      if (sibling >= n) return;
      store.setNode({ level: 0, index: sibling }, Buffer.alloc(32, 0xee));
      const tampered = await inclusionProof(store, index, n);
      assert.notDeepEqual(tampered, proof);
      assert.ok(!verifyInclusion(hashLeaf(leaves[index] as Buffer), index, n, tampered, root));
    }),
    { numRuns: 100 },
  );
});

function flip(buf: Buffer, at: number, mask: number): void {
  buf[at] = (buf[at] ?? 0) ^ mask;
}
