/**
 * The native shard opener (native/shard_open.c) driven directly: it decrypts and hashes exactly
 * what the JavaScript path does, wipes what it wrote on every failure (and on success when asked),
 * refuses malformed arguments with a thrown error instead of crashing the process (property test
 * over arbitrary values), and reports a read error as EG_IO. Through PackageFile it is covered by
 * shards.test.ts and tamper.property.test.ts alongside the JavaScript path.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import {
  ChunkCipher,
  deriveStreamMaterial,
  generateContentKey,
  generateSigningKey,
  TAG_BYTES,
  type CipherSuite,
  type ContentKey,
  type SigningKeyPair,
} from '../../src/crypto/index.ts';
import { PackageFile, verifyPackage } from '../../src/model/index.ts';
import { nativeBinding, nativeOpenerStatus, type NativeBinding } from '../../src/model/native-opener.ts';
import { packBytes } from '../helpers/packages.ts';

const CHUNK = 1024;
const SHARD_CHUNKS = 3;
const LENGTH = CHUNK * 7 + 100; // 8 chunks, 3 shards (3, 3, 2 chunks)
const status = nativeOpenerStatus();
const skip = status.available ? false : `the native shard opener is ${status.reason}`;

test(
  'the native shard opener is built where it is required (CI sets EDGEGUARD_NATIVE_REQUIRED=1)',
  { skip: process.env.EDGEGUARD_NATIVE_REQUIRED !== '1' && 'not required here' },
  () => {
    assert.equal(status.available, true, `EDGEGUARD_NATIVE_REQUIRED=1 but the native shard opener is ${status.reason}`);
  },
);

let dir: string;
let keys: { contentKey: ContentKey; signer: SigningKeyPair };
let plain: Buffer;
const packages = new Map<CipherSuite, string>();

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'eg-native-'));
  keys = { contentKey: generateContentKey(), signer: generateSigningKey() };
  plain = randomBytes(LENGTH);
  for (const suite of ['aes-256-gcm', 'chacha20-poly1305'] as const) {
    packages.set(
      suite,
      (await packBytes(dir, plain, keys, { suite, chunkSize: CHUNK, shardSize: CHUNK * SHARD_CHUNKS })).packagePath,
    );
  }
});
after(() => rm(dir, { recursive: true, force: true }));

/** The plan the opener takes for the package at `path`, with the expected shard digests of `plain`. */
async function planFor(path: string, fd: number) {
  const pkg = await PackageFile.open(path);
  try {
    const h = pkg.header;
    const { key, prefix } = deriveStreamMaterial(h.suite, keys.contentKey.bytes, h.salt, pkg.parsed.digest);
    const shards = Math.ceil(LENGTH / (CHUNK * SHARD_CHUNKS));
    const expected = Buffer.concat(
      Array.from({ length: shards }, (_, s) =>
        createHash('sha256')
          .update(plain.subarray(s * CHUNK * SHARD_CHUNKS, (s + 1) * CHUNK * SHARD_CHUNKS))
          .digest(),
      ),
    );
    return {
      fd,
      suite: h.suite,
      key,
      prefix,
      aad: pkg.parsed.digest,
      headerBytes: pkg.parsed.bytes.length,
      chunkSize: h.chunkSize,
      plaintextLength: h.plaintextLength,
      chunks: Math.ceil(LENGTH / CHUNK),
      shardChunks: SHARD_CHUNKS,
      expected,
    };
  } finally {
    await pkg.close();
  }
}

const slot = () => Buffer.alloc(CHUNK * SHARD_CHUNKS + TAG_BYTES, 0xa5);
const allZero = (b: Buffer) => b.every((x) => x === 0);

async function withOpener<T>(
  path: string,
  fn: (
    b: NativeBinding,
    h: ReturnType<NativeBinding['create']>,
    plan: Awaited<ReturnType<typeof planFor>>,
  ) => Promise<T>,
): Promise<T> {
  const b = nativeBinding()!;
  const fd = openSync(path, 'r');
  try {
    const plan = await planFor(path, fd);
    const h = b.create(plan);
    try {
      return await fn(b, h, plan);
    } finally {
      b.destroy(h);
    }
  } finally {
    closeSync(fd);
  }
}

for (const suite of ['aes-256-gcm', 'chacha20-poly1305'] as const) {
  test(
    `every shard opens to the original plaintext, in parallel, and wipeAfter leaves zeros (${suite})`,
    { skip },
    async () => {
      await withOpener(packages.get(suite)!, async (b, h) => {
        const outs = [slot(), slot(), slot()];
        const results = await Promise.all(outs.map((o, s) => b.open(h, s, o, false)));
        assert.deepEqual(results, [null, null, null]);
        outs.forEach((o, s) => {
          const want = plain.subarray(s * CHUNK * SHARD_CHUNKS, (s + 1) * CHUNK * SHARD_CHUNKS);
          assert.ok(o.subarray(0, want.length).equals(want), `shard ${s}`);
          assert.ok(
            allZero(o.subarray(want.length, want.length + TAG_BYTES)),
            `shard ${s}: the tag bytes after the plaintext are wiped`,
          );
        });
        const wiped = slot();
        assert.equal(await b.open(h, 1, wiped, true), null);
        assert.ok(allZero(wiped), 'wipeAfter: nothing of the plaintext stays');
      });
    },
  );
}

test(
  'verify-only opens (no output buffer) give the same verdicts: success, tampered, digest mismatch, truncated',
  { skip },
  async () => {
    for (const suite of ['aes-256-gcm', 'chacha20-poly1305'] as const) {
      await withOpener(packages.get(suite)!, async (b, h, plan) => {
        assert.deepEqual(await Promise.all([0, 1, 2].map((s) => b.open(h, s, null, false))), [null, null, null], suite);
        const expected = Buffer.from(plan.expected);
        expected[32]! ^= 1;
        const h2 = b.create({ ...plan, expected });
        try {
          assert.deepEqual(await b.open(h2, 1, null, false), { code: 'EG_DIGEST_MISMATCH', shard: 1 });
        } finally {
          b.destroy(h2);
        }
      });
    }
    const bytes = await readFile(packages.get('aes-256-gcm')!);
    const pkg = await PackageFile.open(packages.get('aes-256-gcm')!);
    const headerBytes = pkg.parsed.bytes.length;
    await pkg.close();
    const flipped = Buffer.from(bytes);
    flipped[headerBytes + 5 * (CHUNK + TAG_BYTES) + CHUNK + 3]! ^= 1; // chunk 5's tag
    const path = join(dir, 'verify-only.egm');
    await writeFile(path, flipped);
    await withOpener(path, async (b, h) =>
      assert.deepEqual(await b.open(h, 1, null, false), { code: 'EG_TAMPERED', chunk: 5 }),
    );
    // Cut inside chunk 7's ciphertext, and then inside chunk 6's tag.
    for (const [cut, chunk] of [
      [bytes.length - 50, 7],
      [headerBytes + 7 * (CHUNK + TAG_BYTES) - 4, 6],
    ] as const) {
      await writeFile(path, bytes.subarray(0, cut));
      await withOpener(path, async (b, h) =>
        assert.deepEqual(await b.open(h, 2, null, false), { code: 'EG_TRUNCATED', chunk }),
      );
    }
  },
);

test(
  'a tampered chunk fails with its index and wipes the whole slot, genuine chunks before it included',
  { skip },
  async () => {
    const bytes = await readFile(packages.get('aes-256-gcm')!);
    const pkg = await PackageFile.open(packages.get('aes-256-gcm')!);
    const headerBytes = pkg.parsed.bytes.length;
    await pkg.close();
    const path = join(dir, 'tampered.egm');
    bytes[headerBytes + 4 * (CHUNK + TAG_BYTES) + 10]! ^= 1; // chunk 4: the second chunk of shard 1
    await writeFile(path, bytes);
    await withOpener(path, async (b, h) => {
      const out = slot();
      assert.deepEqual(await b.open(h, 1, out, false), { code: 'EG_TAMPERED', chunk: 4 });
      assert.ok(allZero(out), 'chunk 3 authenticated, but its plaintext must not stay in a failed slot');
      assert.equal(await b.open(h, 0, slot(), false), null, 'other shards are unaffected');
    });
  },
);

test('a signed digest that does not match fails the shard (EG_DIGEST_MISMATCH) and wipes it', { skip }, async () => {
  await withOpener(packages.get('chacha20-poly1305')!, async (b, _h, plan) => {
    const expected = Buffer.from(plan.expected);
    expected[32 * 2]! ^= 0xff;
    const h2 = b.create({ ...plan, expected });
    try {
      const out = slot();
      assert.deepEqual(await b.open(h2, 2, out, false), { code: 'EG_DIGEST_MISMATCH', shard: 2 });
      assert.ok(allZero(out));
      assert.equal(await b.open(h2, 1, slot(), false), null);
    } finally {
      b.destroy(h2);
    }
  });
});

test('truncation, a too-small slot and a read error are reported, not crashed on', { skip }, async () => {
  const bytes = await readFile(packages.get('aes-256-gcm')!);
  const path = join(dir, 'short.egm');
  await writeFile(path, bytes.subarray(0, bytes.length - 50));
  await withOpener(path, async (b, h) => {
    assert.deepEqual(await b.open(h, 2, slot(), false), { code: 'EG_TRUNCATED', chunk: 7 });
    const r = await b.open(h, 0, Buffer.alloc(CHUNK), false);
    assert.equal(r?.code, 'EG_INTERNAL');
  });
  const b = nativeBinding()!;
  const fd = openSync(packages.get('aes-256-gcm')!, 'r');
  const plan = await planFor(packages.get('aes-256-gcm')!, fd);
  closeSync(fd);
  const h = b.create(plan);
  try {
    const r = await b.open(h, 0, slot(), false);
    assert.equal(r?.code, 'EG_IO');
    assert.match((r as { message: string }).message, /bad file descriptor/i);
    assert.equal((await b.open(h, 1, null, false))?.code, 'EG_IO', 'verify-only too');
  } finally {
    b.destroy(h);
  }
});

test('destroy refuses while a shard is being opened, and nothing opens after it', { skip }, async () => {
  await withOpener(packages.get('aes-256-gcm')!, async (b, h, plan) => {
    const h2 = b.create(plan);
    const pending = b.open(h2, 0, slot(), false);
    assert.throws(() => b.destroy(h2), /still being opened/);
    assert.equal(await pending, null);
    b.destroy(h2);
    assert.throws(() => b.open(h2, 0, slot(), false), /invalid open\(\) arguments/);
    assert.equal(await b.open(h, 0, slot(), false), null);
  });
});

test('malformed plans and open() arguments throw; they never crash the process (property)', { skip }, async () => {
  const b = nativeBinding()!;
  const fd = openSync(packages.get('aes-256-gcm')!, 'r');
  try {
    const plan = await planFor(packages.get('aes-256-gcm')!, fd);
    // Named mistakes first.
    const bad: Array<[string, unknown]> = [
      ['no plan', undefined],
      ['unknown suite', { ...plan, suite: 'aes-128-cbc' }],
      ['short key', { ...plan, key: plan.key.subarray(0, 16) }],
      ['short prefix', { ...plan, prefix: Buffer.alloc(6) }],
      ['zero chunk size', { ...plan, chunkSize: 0 }],
      ['no chunks', { ...plan, chunks: 0 }],
      ['more chunks than the length implies', { ...plan, chunks: plan.chunks + 1 }],
      ['a length beyond 2^53', { ...plan, plaintextLength: 2 ** 60 }],
      ['expected of the wrong length', { ...plan, expected: Buffer.alloc(33) }],
      ['a string for a buffer', { ...plan, aad: 'x'.repeat(32) }],
    ];
    for (const [label, p] of bad)
      assert.throws(
        () => b.create(p as never),
        (e: Error & { code?: string }) => e.code === 'EG_INTERNAL',
        label,
      );
    const h = b.create(plan);
    try {
      for (const args of [
        [h, 3, slot(), false],
        [h, -1, slot(), false],
        [h, 0, 'not a buffer', false],
        [h, 0, Buffer.alloc(0), false],
        [{}, 0, slot(), false],
        [h, 0, slot()],
      ] as unknown[][]) {
        assert.throws(() => (b.open as (...a: unknown[]) => unknown)(...args), /invalid open\(\) arguments/);
      }
      // Then anything at all, field by field and whole.
      const field = fc.oneof(
        fc.anything(),
        fc.uint8Array({ maxLength: 40 }).map((u) => Buffer.from(u)),
        fc.integer(),
        fc.double(),
      );
      fc.assert(
        fc.property(
          fc.record({ key: fc.constantFrom(...Object.keys(plan)), value: field }),
          fc.anything(),
          ({ key, value }, whole) => {
            for (const p of [{ ...plan, [key]: value }, whole]) {
              try {
                const made = b.create(p as never);
                b.destroy(made);
              } catch (e) {
                assert.equal((e as { code?: string }).code, 'EG_INTERNAL');
              }
            }
          },
        ),
        { numRuns: 300 },
      );
    } finally {
      b.destroy(h);
    }
  } finally {
    closeSync(fd);
  }
});

/**
 * verifyPackage end to end on a package with the default shard size (shards.test.ts uses a small
 * one), both engines: progress to the end, a model re-encrypted by a key holder, two faults at
 * once, and a signature by someone else taking precedence over any chunk fault.
 */
test(
  'verify reports the first fault in serial order, and a bad signature before any chunk fault (both engines)',
  { skip },
  async () => {
    const chunkSize = 4096;
    const length = 5 * 65536 + 999; // 6 shards of the default 64 KiB
    const data = randomBytes(length);
    const p = await packBytes(dir, data, keys, { chunkSize });
    const trust = ({ engine }: { engine: 'native' | 'js' }) => ({
      publicKeys: [keys.signer.publicKey],
      contentKey: keys.contentKey,
      engine,
    });
    const code = (codes: string[], label: string) => (e: unknown) => {
      assert.ok(codes.includes((e as { code?: string }).code ?? ''), `${label}: got ${String(e)}`);
      return true;
    };
    // Genuine, with progress reaching the end.
    const seen: number[] = [];
    const ok = await verifyPackage(p.packagePath, {
      ...trust({ engine: 'native' }),
      onProgress: (done: number) => void seen.push(done),
    });
    assert.equal(ok.chunksAuthenticated, true);
    assert.equal(seen.at(-1), length);
    // A different model re-encrypted under the signed header (every tag verifies, shard 4's digest does not).
    const other = Buffer.from(data);
    other[4 * 65536 + 3]! ^= 1;
    const h = p.parsed.header;
    const cipher = new ChunkCipher(h.suite, keys.contentKey.bytes, h.salt, p.parsed.digest);
    const n = Math.ceil(length / chunkSize);
    const sealedChunks = Array.from({ length: n }, (_, i) =>
      cipher.seal(i, i === n - 1, other.subarray(i * chunkSize, Math.min(length, (i + 1) * chunkSize))),
    );
    cipher.destroy();
    const reenc = join(dir, 'reenc-default-shards.egm');
    await writeFile(reenc, Buffer.concat([p.parsed.bytes, ...sealedChunks]));
    await writeFile(`${reenc}.sig.json`, await readFile(p.signaturePath));
    for (const engine of ['native', 'js'] as const) {
      await assert.rejects(
        verifyPackage(reenc, trust({ engine })),
        (e: unknown) =>
          code(['EG_DIGEST_MISMATCH'], engine)(e) && (e as { details?: { shard?: number } }).details?.shard === 4,
      );
    }
    // A tampered chunk after the mismatching shard: the mismatch (earlier in order) is what is reported.
    const both = Buffer.concat([p.parsed.bytes, ...sealedChunks]);
    both[both.length - 5]! ^= 1;
    await writeFile(reenc, both);
    for (const engine of ['native', 'js'] as const)
      await assert.rejects(
        verifyPackage(reenc, trust({ engine })),
        code(['EG_DIGEST_MISMATCH'], `${engine}, two faults`),
      );
    // A signature by someone else wins over bad chunks: it is reported, not a chunk error, and the check stops.
    const stranger = generateSigningKey();
    for (const engine of ['native', 'js'] as const) {
      await assert.rejects(
        verifyPackage(reenc, { ...trust({ engine }), publicKeys: [stranger.publicKey] }),
        code(['EG_SIGNATURE_INVALID'], engine),
      );
    }
    // The wrong content key with a bad signature: still the signature's error.
    await assert.rejects(
      verifyPackage(reenc, {
        ...trust({ engine: 'native' }),
        contentKey: generateContentKey(),
        publicKeys: [stranger.publicKey],
      }),
      code(['EG_SIGNATURE_INVALID'], 'wrong key'),
    );
  },
);
