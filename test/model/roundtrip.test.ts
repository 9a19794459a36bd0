import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import {
  decryptPackageToMemory,
  unpackPackage,
  verifyPackage,
  PackageFile,
  chunkCount,
} from '../../src/model/index.ts';
import { generateContentKey, generateSigningKey, type CipherSuite } from '../../src/crypto/index.ts';
import { packBytes } from '../helpers/packages.ts';
import { tempDir } from '../helpers/workspace.ts';
import { NATIVE_AVAILABLE, type EnginePath } from '../helpers/engines.ts';
import { withEngineTuning } from '../../src/model/engine-tuning.ts';

// Every shard opener: the native addon (when built), JavaScript on worker threads, and on this thread.
const ENGINE_OPTIONS: EnginePath[] = [
  ...(NATIVE_AVAILABLE ? [{ engine: 'native' as const }] : []),
  { engine: 'js', workers: 2, parallelFrom: 0 },
  { engine: 'js', parallelFrom: Number.MAX_SAFE_INTEGER },
];

const CHUNK = 1024;
const SIZES: Array<[string, number]> = [
  ['empty', 0],
  ['one byte', 1],
  ['exactly one chunk', CHUNK],
  ['one chunk plus one byte', CHUNK + 1],
  ['many chunks', CHUNK * 37 + 123],
  ['many whole chunks', CHUNK * 8],
];

for (const suite of ['aes-256-gcm', 'chacha20-poly1305'] as CipherSuite[]) {
  for (const [label, size] of SIZES) {
    test(`round trip is bit-exact: ${label} (${size} bytes), ${suite}`, async (t) => {
      const dir = await tempDir(t);
      const keys = { contentKey: generateContentKey(), signer: generateSigningKey() };
      const data = randomBytes(size);
      const packed = await packBytes(dir, data, keys, { suite, chunkSize: CHUNK });
      const pkgSize = (await stat(packed.packagePath)).size;
      assert.equal(pkgSize, packed.parsed.bytes.length + size + chunkCount(size, CHUNK) * 16);
      assert.equal(packed.parsed.header.suite, suite);

      for (const parallel of ENGINE_OPTIONS) {
        const label = JSON.stringify(parallel);
        await withEngineTuning(parallel, async () => {
          const trust = { publicKeys: [keys.signer.publicKey], contentKey: keys.contentKey, engine: parallel.engine };
          const mem = await decryptPackageToMemory(packed.packagePath, trust);
          assert.ok(mem.plaintext.equals(data), label);

          const out = join(dir, `out-${parallel.engine}-${parallel.parallelFrom ?? 'n'}.bin`);
          await unpackPackage(packed.packagePath, out, trust);
          assert.ok((await readFile(out)).equals(data), label);

          const v = await verifyPackage(packed.packagePath, trust);
          assert.equal(v.chunksAuthenticated, true);
          assert.equal(v.chunks, chunkCount(size, CHUNK));
          assert.equal(v.engine?.engine, parallel.engine, label);
        });
      }
    });
  }
}

test('the default chunk size is 1 MiB and chunks are streamed in order', async (t) => {
  const dir = await tempDir(t);
  const keys = { contentKey: generateContentKey(), signer: generateSigningKey('ed25519') };
  const data = randomBytes(2 * 1024 * 1024 + 5);
  const packed = await packBytes(dir, data, keys);
  assert.equal(packed.parsed.header.chunkSize, 1024 * 1024);
  const pkg = await PackageFile.open(packed.packagePath);
  const seen: Array<[number, number, number]> = [];
  try {
    await pkg.decrypt(keys.contentKey, { chunk: (p, i, off) => void seen.push([i, off, p.length]) });
  } finally {
    await pkg.close();
  }
  assert.deepEqual(seen, [
    [0, 0, 1048576],
    [1, 1048576, 1048576],
    [2, 2097152, 5],
  ]);
});

test('a content key of another package is refused before any decryption (EG_WRONG_KEY)', async (t) => {
  const dir = await tempDir(t);
  const keys = { contentKey: generateContentKey(), signer: generateSigningKey() };
  const packed = await packBytes(dir, randomBytes(5000), keys, { chunkSize: 1024 });
  await assert.rejects(
    decryptPackageToMemory(packed.packagePath, {
      publicKeys: [keys.signer.publicKey],
      contentKey: generateContentKey(),
    }),
    (e: { code?: string }) => e.code === 'EG_WRONG_KEY',
  );
});

test('packing refuses to overwrite an existing package unless asked', async (t) => {
  const dir = await tempDir(t);
  const keys = { contentKey: generateContentKey(), signer: generateSigningKey() };
  const packed = await packBytes(dir, randomBytes(10), keys);
  const { packModel } = await import('../../src/model/index.ts');
  await assert.rejects(
    packModel({
      inputPath: packed.packagePath,
      outputPath: packed.packagePath,
      contentKey: keys.contentKey,
      signer: keys.signer,
      metadata: packed.parsed.header.metadata,
    }),
    (e: { code?: string }) => e.code === 'EG_EXISTS',
  );
});
