/**
 * Property tests: any modification of a package is refused by verify, unpack and the in-memory
 * path (what `run` uses), with a specific error code, and no plaintext of a chunk is ever
 * released before that chunk authenticates.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { copyFile, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import {
  decryptPackageToMemory,
  unpackPackage,
  verifyPackage,
  PackageFile,
  type PackResult,
} from '../../src/model/index.ts';
import {
  generateContentKey,
  generateSigningKey,
  TAG_BYTES,
  type ContentKey,
  type SigningKeyPair,
} from '../../src/crypto/index.ts';
import { EdgeguardError, type ErrorCode } from '../../src/errors/index.ts';
import { packBytes } from '../helpers/packages.ts';
import { ENGINES } from '../helpers/engines.ts';

const CHUNK = 256;
const LENGTH = CHUNK * 10 + 77; // 11 chunks, the last one short
let dir: string;
let keys: { contentKey: ContentKey; signer: SigningKeyPair };
let plain: Buffer;
let a: PackResult;
let b: PackResult;
let aBytes: Buffer;
let bBytes: Buffer;
let headerLen: number;
let counter = 0;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'eg-tamper-'));
  keys = { contentKey: generateContentKey(), signer: generateSigningKey() };
  plain = randomBytes(LENGTH);
  a = await packBytes(dir, plain, keys, { chunkSize: CHUNK });
  b = await packBytes(dir, randomBytes(LENGTH), keys, { chunkSize: CHUNK });
  aBytes = await readFile(a.packagePath);
  bBytes = await readFile(b.packagePath);
  headerLen = a.parsed.bytes.length;
});
after(() => rm(dir, { recursive: true, force: true }));

const sealed = (i: number) => Math.min(CHUNK, LENGTH - i * CHUNK) + TAG_BYTES;
const chunkStart = (i: number) => headerLen + i * (CHUNK + TAG_BYTES);
const chunkBytes = (buf: Buffer, i: number) => buf.subarray(chunkStart(i), chunkStart(i) + sealed(i));
const N = Math.ceil(LENGTH / CHUNK);

/** Write a modified copy of package A (with A's signature) and check every consumer refuses it. */
async function assertRefused(mutated: Buffer, allowed: ErrorCode[], allowedRaw: ErrorCode[] = allowed): Promise<void> {
  const path = join(dir, `m${counter++}.egm`);
  await writeFile(path, mutated);
  await copyFile(a.signaturePath, `${path}.sig.json`);
  const check = (label: string, codes: ErrorCode[]) => (e: unknown) => {
    assert.ok(e instanceof EdgeguardError, `${label}: expected an EdgeguardError, got ${String(e)}`);
    assert.ok(codes.includes(e.code), `${label}: got ${e.code} (${e.message}), expected one of ${codes.join(', ')}`);
    return true;
  };
  try {
    // Both shard openers (the native addon when built, and the JavaScript path) must agree.
    for (const engine of ENGINES) {
      const trust = { publicKeys: [keys.signer.publicKey], contentKey: keys.contentKey, engine };
      await assert.rejects(verifyPackage(path, trust), check(`verify (${engine})`, allowed));
      const out = join(dir, `out-${counter}.bin`);
      await assert.rejects(unpackPackage(path, out, trust), check(`unpack (${engine})`, allowed));
      await assert.rejects(stat(out), 'unpack left an output file behind');
      await assert.rejects(decryptPackageToMemory(path, trust), check(`memory (${engine})`, allowed));
      // Without the signature check: the AEAD alone must refuse, releasing only genuine chunks.
      let pkg: PackageFile | undefined;
      await assert.rejects(
        (async () => {
          pkg = await PackageFile.open(path);
          await pkg.decrypt(
            keys.contentKey,
            {
              chunk: (p, i, off) => {
                assert.ok(
                  p.equals(plain.subarray(off, off + p.length)),
                  `chunk ${i} released plaintext that is not the original (${engine})`,
                );
              },
            },
            { engine },
          );
        })(),
        check(`raw decrypt (${engine})`, allowedRaw),
      );
      await pkg?.close();
    }
  } finally {
    await rm(path, { force: true });
    await rm(`${path}.sig.json`, { force: true });
  }
}

const RUNS = { numRuns: 60 };

test('any single-bit flip is refused', async () => {
  await fc.assert(
    fc.asyncProperty(fc.nat(), fc.integer({ min: 0, max: 7 }), async (pos, bit) => {
      const at = pos % aBytes.length;
      const m = Buffer.from(aBytes);
      m[at]! ^= 1 << bit;
      const inHeader = at < headerLen;
      const headerCodes: ErrorCode[] = [
        'EG_FORMAT',
        'EG_UNSUPPORTED',
        'EG_SIGNATURE_MISMATCH',
        'EG_TRUNCATED',
        'EG_TRAILING_DATA',
      ];
      const rawHeaderCodes: ErrorCode[] = [
        'EG_FORMAT',
        'EG_UNSUPPORTED',
        'EG_TAMPERED',
        'EG_WRONG_KEY',
        'EG_TRUNCATED',
        'EG_TRAILING_DATA',
      ];
      await assertRefused(m, inHeader ? headerCodes : ['EG_TAMPERED'], inHeader ? rawHeaderCodes : ['EG_TAMPERED']);
    }),
    RUNS,
  );
});

test('any truncation is refused', async () => {
  await fc.assert(
    fc.asyncProperty(fc.nat(), async (n) => {
      const len = n % aBytes.length;
      await assertRefused(aBytes.subarray(0, len), ['EG_TRUNCATED', 'EG_FORMAT', 'EG_TAMPERED']);
    }),
    RUNS,
  );
});

test('appended bytes are refused', async () => {
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 300 }), async (extra) => {
      await assertRefused(Buffer.concat([aBytes, extra]), ['EG_TRAILING_DATA']);
    }),
    { numRuns: 20 },
  );
});

function withChunks(chunks: Buffer[]): Buffer {
  return Buffer.concat([aBytes.subarray(0, headerLen), ...chunks]);
}
const originalChunks = () => Array.from({ length: N }, (_, i) => chunkBytes(aBytes, i));

test('a dropped chunk is refused', async () => {
  for (let i = 0; i < N; i++) {
    const chunks = originalChunks();
    chunks.splice(i, 1);
    await assertRefused(withChunks(chunks), ['EG_TAMPERED', 'EG_TRUNCATED']);
  }
});

test('a duplicated chunk is refused', async () => {
  for (let i = 0; i < N; i++) {
    const chunks = originalChunks();
    chunks.splice(i, 0, chunks[i]!);
    await assertRefused(withChunks(chunks), ['EG_TAMPERED', 'EG_TRAILING_DATA']);
  }
});

test('reordered chunks are refused', async () => {
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 0, max: N - 1 }), fc.integer({ min: 0, max: N - 1 }), async (i, j) => {
      fc.pre(i !== j);
      const chunks = originalChunks();
      [chunks[i], chunks[j]] = [chunks[j]!, chunks[i]!];
      await assertRefused(withChunks(chunks), ['EG_TAMPERED']);
    }),
    { numRuns: 30 },
  );
});

test('a chunk spliced in from another package under the same key is refused', async () => {
  for (let i = 0; i < N; i++) {
    const chunks = originalChunks();
    chunks[i] = chunkBytes(bBytes, i);
    await assertRefused(withChunks(chunks), ['EG_TAMPERED']);
  }
});

test('every edited header field is refused', async () => {
  // Offsets from docs/formats.md: version, suite, flags, chunk size, salt, key id, length, digest, metadata length, metadata.
  const fields: Array<[string, number, number]> = [
    ['magic', 0, 8],
    ['version', 8, 2],
    ['suite', 10, 1],
    ['flags', 11, 1],
    ['chunk size', 12, 4],
    ['salt', 16, 32],
    ['key id', 48, 32],
    ['plaintext length', 80, 8],
    ['plaintext sha256', 88, 32],
    ['metadata length', 120, 4],
    ['metadata', 124, headerLen - 124],
  ];
  for (const [name, off, len] of fields) {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: len, maxLength: len }), async (value) => {
        fc.pre(!Buffer.from(value).equals(aBytes.subarray(off, off + len)));
        const m = Buffer.from(aBytes);
        Buffer.from(value).copy(m, off);
        await assertRefused(
          m,
          ['EG_FORMAT', 'EG_UNSUPPORTED', 'EG_SIGNATURE_MISMATCH', 'EG_TRUNCATED'],
          ['EG_FORMAT', 'EG_UNSUPPORTED', 'EG_TAMPERED', 'EG_WRONG_KEY', 'EG_TRUNCATED', 'EG_TRAILING_DATA'],
        );
      }),
      { numRuns: 8 },
    );
    void name;
  }
  // A suite switched to the other valid suite still parses: the signature (and the AEAD) refuse it.
  const m = Buffer.from(aBytes);
  m[10] = m[10] === 1 ? 2 : 1;
  await assertRefused(m, ['EG_SIGNATURE_MISMATCH'], ['EG_TAMPERED']);
});
