/**
 * The Merkle tree of the audit log: RFC 9162 section 2.1 (the same tree as RFC 6962 and C2SP
 * tlog-tiles), SHA-256.
 *
 *   MTH({})       = SHA-256()
 *   MTH({d0})     = SHA-256(0x00 || d0)                          (leaf hash, 2.1.1)
 *   MTH(D[n])     = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))  k = largest power of two < n
 *
 * Proof generation (2.1.3.1 inclusion PATH, 2.1.4.1 consistency PROOF) is written as a list of
 * leaf ranges whose MTH the proof carries. Every such range decomposes into at most log2(n)
 * complete, aligned subtrees ("nodes": level l, index i covers leaves [i*2^l, (i+1)*2^l)), so a
 * store that keeps the hash of every complete subtree answers any proof with O(log n) reads and
 * O(log n) hashing, whatever the tree size, and without touching leaves.
 *
 * Indices and sizes are JavaScript numbers (exact up to 2^53); no 32-bit bit operators are used.
 */
import { createHash } from 'node:crypto';
import { EdgeguardError } from '../errors/index.ts';

export const HASH_BYTES = 32;

/** A complete subtree: level 0 is a leaf hash, level l covers 2^l leaves starting at index * 2^l. */
export interface NodeId {
  level: number;
  index: number;
}

/** Where proof generation reads node hashes from: memory, SQLite, PostgreSQL. */
export interface NodeSource {
  /** Hashes of the given complete subtrees, in order; throws if one is missing. */
  getNodes(ids: readonly NodeId[]): Promise<Uint8Array[]>;
}

/** SHA-256 of the empty string: the root of the empty tree (2.1.1). */
export const EMPTY_ROOT: Buffer = createHash('sha256').digest();

/** Leaf hash, 2.1.1: SHA-256(0x00 || data). */
export function hashLeaf(data: Uint8Array): Buffer {
  return createHash('sha256').update(LEAF_PREFIX).update(data).digest();
}

/** Interior node hash, 2.1.1: SHA-256(0x01 || left || right). */
export function hashChildren(left: Uint8Array, right: Uint8Array): Buffer {
  return createHash('sha256').update(NODE_PREFIX).update(left).update(right).digest();
}

const LEAF_PREFIX = Buffer.from([0x00]);
const NODE_PREFIX = Buffer.from([0x01]);

/** The largest power of two strictly smaller than n (n >= 2). */
export function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

function isPowerOfTwo(n: number): boolean {
  if (n < 1) return false;
  while (n % 2 === 0) n /= 2;
  return n === 1;
}

function half(n: number): number {
  return Math.floor(n / 2);
}

function odd(n: number): boolean {
  return n % 2 === 1;
}

/** Reference MTH straight from the definition: O(n) hashing, for tests and small in-memory trees. */
export function rootFromLeafHashes(leafHashes: readonly Uint8Array[]): Buffer {
  if (leafHashes.length === 0) return Buffer.from(EMPTY_ROOT);
  const frontier = new CompactRange();
  for (const h of leafHashes) frontier.append(h);
  return frontier.root();
}

/**
 * The complete subtrees that make up the leaf range [start, end), left to right, each the
 * largest aligned power of two that fits. For the ranges RFC 9162 proofs use (start aligned to
 * a power of two >= end - start) this is exactly the RFC tree's decomposition, and the range's
 * MTH is the right fold of hashChildren over these nodes.
 */
export function rangeNodes(start: number, end: number): NodeId[] {
  const out: NodeId[] = [];
  let at = start;
  while (at < end) {
    let level = 0;
    let width = 1;
    while (at % (width * 2) === 0 && at + width * 2 <= end) {
      width *= 2;
      level += 1;
    }
    out.push({ level, index: at / width });
    at += width;
  }
  return out;
}

/** MTH of a range from the hashes of its rangeNodes(), folding from the right. */
export function foldRange(nodeHashes: readonly Uint8Array[]): Buffer {
  if (nodeHashes.length === 0) return Buffer.from(EMPTY_ROOT);
  let acc: Buffer = Buffer.from(nodeHashes[nodeHashes.length - 1] as Uint8Array);
  for (let i = nodeHashes.length - 2; i >= 0; i--) acc = hashChildren(nodeHashes[i] as Uint8Array, acc);
  return acc;
}

/** A leaf range [start, end) whose MTH is one element of a proof. */
export interface LeafRange {
  start: number;
  end: number;
}

/**
 * RFC 9162 2.1.3.1: the ranges of PATH(m, D[n]) in proof order (nearest the leaf first).
 * PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n]) if m < k, else PATH(m - k, D[k:n]) : MTH(D[0:k]).
 */
export function inclusionProofRanges(index: number, size: number): LeafRange[] {
  checkIndexAndSize(index, size);
  const outerFirst: LeafRange[] = [];
  let offset = 0;
  let m = index;
  let n = size;
  while (n > 1) {
    const k = splitPoint(n);
    if (m < k) {
      outerFirst.push({ start: offset + k, end: offset + n });
      n = k;
    } else {
      outerFirst.push({ start: offset, end: offset + k });
      offset += k;
      m -= k;
      n -= k;
    }
  }
  return outerFirst.reverse();
}

/**
 * RFC 9162 2.1.4.1: the ranges of PROOF(m, D[n]) = SUBPROOF(m, D[n], true) in proof order.
 * SUBPROOF(m, D[m], true) = {}; SUBPROOF(m, D[m], false) = {MTH(D[m])};
 * m < n: SUBPROOF(m, D[0:k], b) : MTH(D[k:n]) if m <= k, else SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k]).
 */
export function consistencyProofRanges(size1: number, size2: number): LeafRange[] {
  checkSize(size1);
  checkSize(size2);
  if (size1 > size2) {
    throw new EdgeguardError('EG_USAGE', `cannot prove consistency from size ${size1} to the smaller size ${size2}.`);
  }
  if (size1 === 0 || size1 === size2) return [];
  const outerFirst: LeafRange[] = [];
  let offset = 0;
  let m = size1;
  let n = size2;
  let complete = true;
  while (m !== n) {
    const k = splitPoint(n);
    if (m <= k) {
      outerFirst.push({ start: offset + k, end: offset + n });
      n = k;
    } else {
      outerFirst.push({ start: offset, end: offset + k });
      offset += k;
      m -= k;
      n -= k;
      complete = false;
    }
  }
  if (!complete) outerFirst.push({ start: offset, end: offset + m });
  return outerFirst.reverse();
}

/** Resolve proof ranges to hashes with a single batched read of O(log n) nodes. */
export async function resolveRanges(source: NodeSource, ranges: readonly LeafRange[]): Promise<Buffer[]> {
  const perRange = ranges.map((r) => rangeNodes(r.start, r.end));
  const ids = perRange.flat();
  const hashes = ids.length === 0 ? [] : await source.getNodes(ids);
  if (hashes.length !== ids.length) {
    throw new EdgeguardError(
      'EG_AUDIT',
      `the log store returned ${hashes.length} of ${ids.length} tree nodes; the store is damaged.`,
    );
  }
  const out: Buffer[] = [];
  let at = 0;
  for (const nodes of perRange) {
    out.push(foldRange(hashes.slice(at, at + nodes.length)));
    at += nodes.length;
  }
  return out;
}

export async function inclusionProof(source: NodeSource, index: number, size: number): Promise<Buffer[]> {
  return resolveRanges(source, inclusionProofRanges(index, size));
}

export async function consistencyProof(source: NodeSource, size1: number, size2: number): Promise<Buffer[]> {
  return resolveRanges(source, consistencyProofRanges(size1, size2));
}

export async function treeRoot(source: NodeSource, size: number): Promise<Buffer> {
  checkSize(size);
  if (size === 0) return Buffer.from(EMPTY_ROOT);
  const [root] = await resolveRanges(source, [{ start: 0, end: size }]);
  return root as Buffer;
}

/**
 * RFC 9162 2.1.3.2: recompute the root from a leaf hash and its inclusion path; true only if it
 * equals `root` and the path has exactly the right length.
 */
export function rootFromInclusionProof(
  leafHash: Uint8Array,
  index: number,
  size: number,
  proof: readonly Uint8Array[],
): Buffer | undefined {
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size) || index < 0 || index >= size) return undefined;
  if (leafHash.length !== HASH_BYTES || proof.some((p) => p.length !== HASH_BYTES)) return undefined;
  let fn = index;
  let sn = size - 1;
  let r: Buffer = Buffer.from(leafHash);
  for (const p of proof) {
    if (sn === 0) return undefined;
    if (odd(fn) || fn === sn) {
      r = hashChildren(p, r);
      if (!odd(fn)) {
        while (!odd(fn) && fn !== 0) {
          fn = half(fn);
          sn = half(sn);
        }
      }
    } else {
      r = hashChildren(r, p);
    }
    fn = half(fn);
    sn = half(sn);
  }
  if (sn !== 0) return undefined;
  return r;
}

export function verifyInclusion(
  leafHash: Uint8Array,
  index: number,
  size: number,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): boolean {
  const r = rootFromInclusionProof(leafHash, index, size, proof);
  return r !== undefined && root.length === HASH_BYTES && r.equals(root);
}

/**
 * RFC 9162 2.1.4.2: a consistency proof shows that the tree of size2 with root2 extends the tree
 * of size1 with root1. Equal sizes need an empty proof and equal roots; size1 = 0 is consistent
 * with anything (and takes an empty proof).
 */
export function verifyConsistency(
  size1: number,
  size2: number,
  proof: readonly Uint8Array[],
  root1: Uint8Array,
  root2: Uint8Array,
): boolean {
  if (!Number.isSafeInteger(size1) || !Number.isSafeInteger(size2) || size1 < 0 || size2 < size1) return false;
  if (proof.some((p) => p.length !== HASH_BYTES)) return false;
  if (size1 === size2) return proof.length === 0 && Buffer.from(root1).equals(root2);
  if (size1 === 0) return proof.length === 0;
  if (proof.length === 0 || root1.length !== HASH_BYTES || root2.length !== HASH_BYTES) return false;
  // Step 2: when size1 is a power of two, the old root is itself a node of the new tree.
  const path = isPowerOfTwo(size1) ? [root1, ...proof] : [...proof];
  let fn = size1 - 1;
  let sn = size2 - 1;
  while (odd(fn)) {
    fn = half(fn);
    sn = half(sn);
  }
  let fr: Buffer = Buffer.from(path[0] as Uint8Array);
  let sr: Buffer = Buffer.from(path[0] as Uint8Array);
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (odd(fn) || fn === sn) {
      fr = hashChildren(c, fr);
      sr = hashChildren(c, sr);
      if (!odd(fn)) {
        while (!odd(fn) && fn !== 0) {
          fn = half(fn);
          sn = half(sn);
        }
      }
    } else {
      sr = hashChildren(sr, c);
    }
    fn = half(fn);
    sn = half(sn);
  }
  return sn === 0 && fr.equals(root1) && sr.equals(root2);
}

/**
 * The right edge of a tree ("compact range" [0, n)): the hashes of rangeNodes(0, n), at most
 * log2(n) + 1 of them. Appending a leaf merges equal-sized neighbours and reports every newly
 * completed subtree, which is exactly what a node store must persist.
 */
export class CompactRange {
  private nodes: Array<{ id: NodeId; hash: Buffer }> = [];
  private count = 0;

  /** Start from a stored tree of `size` leaves whose rangeNodes(0, size) hashes are given. */
  static fromNodes(size: number, hashes: readonly Uint8Array[]): CompactRange {
    const ids = rangeNodes(0, size);
    if (ids.length !== hashes.length) {
      throw new EdgeguardError(
        'EG_AUDIT',
        `a tree of ${size} leaves has ${ids.length} edge nodes, not ${hashes.length}; the log store is damaged.`,
      );
    }
    const range = new CompactRange();
    range.nodes = ids.map((id, i) => ({ id, hash: Buffer.from(hashes[i] as Uint8Array) }));
    range.count = size;
    return range;
  }

  get size(): number {
    return this.count;
  }

  /** Add the next leaf hash; `onNode` sees every complete subtree this completes (level 0 first). */
  append(leafHash: Uint8Array, onNode?: (id: NodeId, hash: Buffer) => void): void {
    if (leafHash.length !== HASH_BYTES) throw new EdgeguardError('EG_INTERNAL', 'a leaf hash must be 32 bytes.');
    let id: NodeId = { level: 0, index: this.count };
    let hash: Buffer = Buffer.from(leafHash);
    onNode?.(id, hash);
    for (;;) {
      const top = this.nodes[this.nodes.length - 1];
      if (top === undefined || top.id.level !== id.level) break;
      this.nodes.pop();
      hash = hashChildren(top.hash, hash);
      id = { level: id.level + 1, index: top.id.index / 2 };
      onNode?.(id, hash);
    }
    this.nodes.push({ id, hash });
    this.count += 1;
  }

  root(): Buffer {
    return foldRange(this.nodes.map((n) => n.hash));
  }

  clone(): CompactRange {
    return CompactRange.fromNodes(
      this.count,
      this.nodes.map((n) => n.hash),
    );
  }
}

/** Every node of a small tree in memory: the NodeSource of tests, the demo and the CLI's checks. */
export class MemoryNodeStore implements NodeSource {
  private readonly map = new Map<string, Buffer>();
  private readonly edge = new CompactRange();

  get size(): number {
    return this.edge.size;
  }

  appendLeafHash(leafHash: Uint8Array): void {
    this.edge.append(leafHash, (id, hash) => this.map.set(`${id.level}/${id.index}`, hash));
  }

  appendLeaf(data: Uint8Array): void {
    this.appendLeafHash(hashLeaf(data));
  }

  root(): Buffer {
    return this.edge.root();
  }

  /** Overwrite a stored node: tests use it to simulate a tampered store. */
  setNode(id: NodeId, hash: Uint8Array): void {
    this.map.set(`${id.level}/${id.index}`, Buffer.from(hash));
  }

  async getNodes(ids: readonly NodeId[]): Promise<Uint8Array[]> {
    return ids.map((id) => {
      const h = this.map.get(`${id.level}/${id.index}`);
      if (h === undefined)
        throw new EdgeguardError('EG_AUDIT', `tree node ${id.level}/${id.index} is missing from the log store.`);
      return h;
    });
  }
}

function checkSize(size: number): void {
  if (!Number.isSafeInteger(size) || size < 0)
    throw new EdgeguardError('EG_USAGE', `tree size ${size} is not a non-negative integer.`);
}

function checkIndexAndSize(index: number, size: number): void {
  checkSize(size);
  if (!Number.isSafeInteger(index) || index < 0 || index >= size) {
    throw new EdgeguardError('EG_NOT_FOUND', `entry ${index} is not in a tree of ${size} entries.`);
  }
}
