/**
 * The signed shard list (OMS v1.0 "shards" serialization) and the parallel opener that checks
 * it: the statement layout, refusals of edited shard lists, per-shard digest checks before any
 * plaintext of a shard is released, and the worker-thread path giving the same results and the
 * same error codes as the single-thread path.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { copyFile, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ChunkCipher,
  generateContentKey,
  generateSigningKey,
  parseEnvelope,
  sha256,
  signEnvelope,
  IN_TOTO_PAYLOAD_TYPE,
  TAG_BYTES,
  type CipherSuite,
  type ContentKey,
  type SigningKeyPair,
} from '../../src/crypto/index.ts';
import {
  decryptPackageToMemory,
  unpackPackage,
  verifyPackage,
  PackageFile,
  type PackResult,
} from '../../src/model/index.ts';
import { EdgeguardError, type ErrorCode } from '../../src/errors/index.ts';
import { packBytes } from '../helpers/packages.ts';
import { NATIVE_AVAILABLE, type EnginePath } from '../helpers/engines.ts';
import { withEngineTuning } from '../../src/model/engine-tuning.ts';

const CHUNK = 1024;
const SHARD = 4 * CHUNK;
const LENGTH = CHUNK * 37 + 123; // 38 chunks, 10 shards, the last one short
const SHARDS = Math.ceil(LENGTH / SHARD);
// Workers only (the calling thread does not help while they start): the worker path, whatever the timing.
const WORKERS: EnginePath = { engine: 'js', workers: 2, parallelFrom: 0, helpWhileStarting: false };
// The native opener (libuv's pool), two shards and one shard at a time (built by npm install; CI requires it).
const NATIVE: EnginePath = { engine: 'native', inflight: 2 };
const PATHS: Array<[string, EnginePath]> = [
  ['one thread', { engine: 'js', parallelFrom: Number.MAX_SAFE_INTEGER }],
  ['worker threads', WORKERS],
  ['worker threads and this thread while they start', { engine: 'js', workers: 2, parallelFrom: 0 }],
  ['one worker thread and this thread throughout', { engine: 'js', workers: 1, parallelFrom: 0, mainOpens: true }],
  ...(NATIVE_AVAILABLE
    ? ([
        ['native opener', NATIVE],
        ['native opener, one shard at a time', { engine: 'native', inflight: 1 }],
      ] as Array<[string, EnginePath]>)
    : []),
];

let dir: string;
let keys: { contentKey: ContentKey; signer: SigningKeyPair };
let plain: Buffer;
let a: PackResult;
let counter = 0;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'eg-shards-'));
  keys = { contentKey: generateContentKey(), signer: generateSigningKey() };
  plain = randomBytes(LENGTH);
  a = await packBytes(dir, plain, keys, { chunkSize: CHUNK, shardSize: SHARD, name: 'detector', version: 3 });
});
after(() => rm(dir, { recursive: true, force: true }));

const trust = (path: EnginePath) => ({
  publicKeys: [keys.signer.publicKey],
  contentKey: keys.contentKey,
  engine: path.engine,
});
/** Run a package operation on one engine path (the engine, and how it spreads its work). */
const on = <T>(path: EnginePath, fn: () => Promise<T>) => withEngineTuning(path, fn);
const isCode =
  (codes: ErrorCode[], label = '') =>
  (e: unknown) => {
    assert.ok(e instanceof EdgeguardError, `${label}: expected an EdgeguardError, got ${String(e)}`);
    assert.ok(codes.includes(e.code), `${label}: got ${e.code} (${e.message}), expected ${codes.join(' or ')}`);
    return true;
  };

interface Statement {
  subject: Array<{ name: string; digest: { sha256: string } }>;
  predicate: {
    serialization: { method: string; hash_type: string; shard_size: number; allow_symlinks: boolean };
    resources: Array<{ name: string; algorithm: string; digest: string }>;
    edgeguard: { package: { plaintextSha256: string; headerSha256: string } };
  };
}

async function statementOf(sigPath: string): Promise<Statement> {
  const env = parseEnvelope(await readFile(sigPath, 'utf8'));
  return JSON.parse(Buffer.from(env.payload, 'base64').toString('utf8'));
}

/** A copy of package A whose signature is `edit`(A's statement), validly signed by the publisher. */
async function resigned(edit: (st: Statement) => void, recomputeSubject: boolean): Promise<string> {
  const path = join(dir, `resigned-${counter++}.egm`);
  await copyFile(a.packagePath, path);
  const st = await statementOf(a.signaturePath);
  edit(st);
  if (recomputeSubject) {
    st.subject[0]!.digest.sha256 = sha256(...st.predicate.resources.map((r) => Buffer.from(r.digest, 'hex'))).toString(
      'hex',
    );
  }
  await writeFile(
    `${path}.sig.json`,
    JSON.stringify(signEnvelope(IN_TOTO_PAYLOAD_TYPE, Buffer.from(JSON.stringify(st)), keys.signer)),
  );
  return path;
}

async function assertAllRefuse(path: string, codes: ErrorCode[]): Promise<void> {
  for (const [label, parallel] of PATHS) {
    await assert.rejects(
      on(parallel, () => verifyPackage(path, trust(parallel))),
      isCode(codes, `verify, ${label}`),
    );
    const out = join(dir, `out-${counter++}.bin`);
    await assert.rejects(
      on(parallel, () => unpackPackage(path, out, trust(parallel))),
      isCode(codes, `unpack, ${label}`),
    );
    await assert.rejects(stat(out), 'unpack left an output file behind');
    await assert.rejects(
      on(parallel, () => decryptPackageToMemory(path, trust(parallel))),
      isCode(codes, `memory, ${label}`),
    );
  }
}

test('the statement lists one OMS shard per shard-size range, and the subject is their root', async () => {
  const st = await statementOf(a.signaturePath);
  assert.deepEqual(st.predicate.serialization, {
    method: 'shards',
    hash_type: 'sha256',
    shard_size: SHARD,
    allow_symlinks: false,
  });
  assert.equal(st.predicate.resources.length, SHARDS);
  const digests: Buffer[] = [];
  st.predicate.resources.forEach((r: { name: string; algorithm: string; digest: string }, i: number) => {
    const start = i * SHARD;
    const end = Math.min(LENGTH, start + SHARD);
    assert.equal(r.name, `model.bin:${start}:${end}`);
    assert.equal(r.algorithm, `sha256-sharded-${SHARD}`);
    const d = createHash('sha256').update(plain.subarray(start, end)).digest();
    assert.equal(r.digest, d.toString('hex'));
    digests.push(d);
  });
  assert.equal(st.subject[0]!.digest.sha256, createHash('sha256').update(Buffer.concat(digests)).digest('hex'));
  assert.equal(st.subject[0]!.name, 'detector');
  assert.equal(st.predicate.edgeguard.package.plaintextSha256, createHash('sha256').update(plain).digest('hex'));
  assert.equal(st.predicate.edgeguard.package.headerSha256, a.parsed.digest.toString('hex'));
});

test('an empty model is signed as one empty shard', async () => {
  const empty = await packBytes(dir, Buffer.alloc(0), keys, { chunkSize: CHUNK, shardSize: SHARD });
  const st = await statementOf(empty.signaturePath);
  assert.deepEqual(
    st.predicate.resources.map((r: { name: string; digest: string }) => [r.name, r.digest]),
    [['model.bin:0:0', createHash('sha256').digest('hex')]],
  );
  for (const [, parallel] of PATHS)
    assert.equal(
      (await on(parallel, () => decryptPackageToMemory(empty.packagePath, trust(parallel)))).plaintext.length,
      0,
    );
});

for (const suite of ['aes-256-gcm', 'chacha20-poly1305'] as CipherSuite[]) {
  test(`worker threads and one thread give bit-exact round trips (${suite})`, async () => {
    const data = randomBytes(LENGTH);
    const p = await packBytes(dir, data, keys, { suite, chunkSize: CHUNK, shardSize: SHARD });
    for (const [label, parallel] of PATHS) {
      const mem = await on(parallel, () => decryptPackageToMemory(p.packagePath, trust(parallel)));
      assert.ok(mem.plaintext.equals(data), `memory, ${label}`);
      const out = join(dir, `rt-${counter++}.bin`);
      await on(parallel, () => unpackPackage(p.packagePath, out, trust(parallel)));
      assert.ok((await readFile(out)).equals(data), `unpack, ${label}`);
      await rm(out);
      const progress: number[] = [];
      await on(parallel, () =>
        verifyPackage(p.packagePath, { ...trust(parallel), onProgress: (done) => void progress.push(done) }),
      );
      assert.deepEqual(
        progress,
        Array.from({ length: SHARDS }, (_, i) => Math.min(LENGTH, (i + 1) * SHARD)),
        `progress, ${label}`,
      );
    }
  });
}

test('chunks reach the sink in order, each whole, from either path', async () => {
  for (const [label, parallel] of PATHS) {
    const pkg = await PackageFile.open(a.packagePath);
    try {
      const sig = await pkg.verifySignature([keys.signer.publicKey]);
      const seen: number[] = [];
      await pkg.decrypt(
        keys.contentKey,
        {
          chunk: (p, i, off) => {
            assert.equal(off, i * CHUNK);
            assert.ok(p.equals(plain.subarray(off, off + CHUNK)), `${label}: chunk ${i}`);
            seen.push(i);
          },
        },
        { ...parallel, shards: sig.shards },
      );
      assert.deepEqual(
        seen,
        Array.from({ length: Math.ceil(LENGTH / CHUNK) }, (_, i) => i),
        label,
      );
    } finally {
      await pkg.close();
    }
  }
});

test('a statement whose subject digest is not the root of its shards is refused (EG_SIGNATURE_INVALID)', async () => {
  const path = await resigned((st) => (st.subject[0]!.digest.sha256 = 'ab'.repeat(32)), false);
  await assertAllRefuse(path, ['EG_SIGNATURE_INVALID']);
  const edited = await resigned((st) => (st.predicate.resources[2]!.digest = 'cd'.repeat(32)), false);
  await assertAllRefuse(edited, ['EG_SIGNATURE_INVALID']);
});

test('an edited shard list is refused even when its root is recomputed and re-signed', async () => {
  const reordered = await resigned((st) => st.predicate.resources.reverse(), true);
  await assertAllRefuse(reordered, ['EG_SIGNATURE_INVALID']);
  const truncated = await resigned((st) => st.predicate.resources.pop(), true);
  await assertAllRefuse(truncated, ['EG_SIGNATURE_INVALID']);
  const extended = await resigned(
    (st) => st.predicate.resources.push({ ...st.predicate.resources[0]!, name: `model.bin:${LENGTH}:${LENGTH}` }),
    true,
  );
  await assertAllRefuse(extended, ['EG_SIGNATURE_INVALID']);
  const renamed = await resigned((st) => (st.predicate.resources[4]!.name = 'other.bin:16384:20480'), true);
  await assertAllRefuse(renamed, ['EG_SIGNATURE_INVALID']);
  const resized = await resigned((st) => (st.predicate.serialization.shard_size = SHARD + 512), true);
  await assertAllRefuse(resized, ['EG_SIGNATURE_INVALID']);
  const algorithm = await resigned((st) => (st.predicate.resources[1]!.algorithm = 'sha256'), true);
  await assertAllRefuse(algorithm, ['EG_SIGNATURE_INVALID']);
  const method = await resigned((st) => (st.predicate.serialization.method = 'files'), true);
  await assertAllRefuse(method, ['EG_SIGNATURE_INVALID']);
});

test('swapped shard digests under a valid signature fail the digest check before that shard is released', async () => {
  const path = await resigned((st) => {
    const [r3, r6] = [st.predicate.resources[3]!, st.predicate.resources[6]!];
    [r3.digest, r6.digest] = [r6.digest, r3.digest];
  }, true);
  // The signature itself is fine: without the content key, verify passes.
  await verifyPackage(path, { publicKeys: [keys.signer.publicKey] });
  await assertAllRefuse(path, ['EG_DIGEST_MISMATCH']);
  for (const [label, parallel] of PATHS) {
    const pkg = await PackageFile.open(path);
    const released: number[] = [];
    try {
      const sig = await pkg.verifySignature([keys.signer.publicKey]);
      await assert.rejects(
        pkg.decrypt(keys.contentKey, { chunk: (_p, i) => void released.push(i) }, { ...parallel, shards: sig.shards }),
        (e: unknown) => isCode(['EG_DIGEST_MISMATCH'], label)(e) && (e as EdgeguardError).details?.shard === 3,
      );
    } finally {
      await pkg.close();
    }
    assert.deepEqual(
      released,
      Array.from({ length: 3 * (SHARD / CHUNK) }, (_, i) => i),
      `${label}: only shards 0-2 were released`,
    );
  }
});

test('a different model re-encrypted under the signed header by a holder of the content key is refused (EG_DIGEST_MISMATCH)', async () => {
  // Same header bytes (so the same subkey, the same header digest, a matching signature), other
  // plaintext in shard 5 only: every AEAD tag verifies; the signed shard digest does not.
  const other = Buffer.from(plain);
  other[5 * SHARD + 17]! ^= 0x40;
  const h = a.parsed.header;
  const cipher = new ChunkCipher(h.suite, keys.contentKey.bytes, h.salt, a.parsed.digest);
  const n = Math.ceil(LENGTH / CHUNK);
  const chunks = Array.from({ length: n }, (_, i) =>
    cipher.seal(i, i === n - 1, other.subarray(i * CHUNK, Math.min(LENGTH, (i + 1) * CHUNK))),
  );
  cipher.destroy();
  const path = join(dir, `reenc-${counter++}.egm`);
  await writeFile(path, Buffer.concat([a.parsed.bytes, ...chunks]));
  await copyFile(a.signaturePath, `${path}.sig.json`);
  await assertAllRefuse(path, ['EG_DIGEST_MISMATCH']);
  // Without the signature, the header's whole-plaintext digest catches it (after the last chunk).
  const pkg = await PackageFile.open(path);
  try {
    await assert.rejects(pkg.decrypt(keys.contentKey, { chunk: () => undefined }), isCode(['EG_DIGEST_MISMATCH']));
  } finally {
    await pkg.close();
  }
});

test('tampering is refused on worker threads with the code of the first bad chunk in order, releasing only genuine chunks', async () => {
  const bytes = await readFile(a.packagePath);
  const headerLen = a.parsed.bytes.length;
  const at = (i: number) => headerLen + i * (CHUNK + TAG_BYTES);
  const cases: Array<[string, Buffer, ErrorCode[], number?]> = [];
  const flip = (chunks: number[]) => {
    const m = Buffer.from(bytes);
    for (const c of chunks) m[at(c) + 5]! ^= 1;
    return m;
  };
  cases.push(['bit flips in chunks 9 and 30', flip([30, 9]), ['EG_TAMPERED'], 9]);
  cases.push(['a bit flip in the last chunk', flip([37]), ['EG_TAMPERED'], 37]);
  cases.push(['truncated inside chunk 21', bytes.subarray(0, at(21) + 100), ['EG_TRUNCATED']]);
  // Shard 0 authenticates first, and with it the header's length: the size check fires.
  cases.push([
    'chunk 12 dropped',
    Buffer.concat([bytes.subarray(0, at(12)), bytes.subarray(at(13))]),
    ['EG_TRUNCATED'],
  ]);
  cases.push([
    'chunks 4 and 5 swapped',
    Buffer.concat([
      bytes.subarray(0, at(4)),
      bytes.subarray(at(5), at(6)),
      bytes.subarray(at(4), at(5)),
      bytes.subarray(at(6)),
    ]),
    ['EG_TAMPERED'],
    4,
  ]);
  cases.push(['trailing bytes', Buffer.concat([bytes, Buffer.from([0])]), ['EG_TRAILING_DATA']]);
  for (const [label, mutated, codes, chunk] of cases) {
    const path = join(dir, `t-${counter++}.egm`);
    await writeFile(path, mutated);
    await copyFile(a.signaturePath, `${path}.sig.json`);
    await assertAllRefuse(path, codes);
    for (const engine of NATIVE_AVAILABLE ? [WORKERS, NATIVE] : [WORKERS]) {
      const pkg = await PackageFile.open(path);
      try {
        const sig = await pkg.verifySignature([keys.signer.publicKey]);
        await assert.rejects(
          on(engine, () =>
            pkg.decrypt(
              keys.contentKey,
              {
                chunk: (p, i, off) =>
                  assert.ok(
                    p.equals(plain.subarray(off, off + p.length)),
                    `${label}: chunk ${i} released plaintext that is not the original`,
                  ),
              },
              { engine: engine.engine, shards: sig.shards },
            ),
          ),
          (e: unknown) =>
            isCode(codes, `${label} (${engine.engine})`)(e) &&
            (chunk === undefined || (e as EdgeguardError).details?.chunk === chunk),
        );
      } finally {
        await pkg.close();
      }
    }
  }
});

test('workers started before the signature check are ended on every outcome', async () => {
  const exited = (w: { threadId: number }) => w.threadId === -1;
  for (const outcome of ['wrong content key', 'success']) {
    const pkg = await PackageFile.open(a.packagePath);
    try {
      const started = await on(WORKERS, async () => pkg.startDecryptWorkers(WORKERS));
      assert.equal(started?.count, 2, outcome);
      const sig = await pkg.verifySignature([keys.signer.publicKey]);
      const decrypting = on(WORKERS, () =>
        pkg.decrypt(outcome === 'success' ? keys.contentKey : generateContentKey(), null, {
          engine: 'js',
          shards: sig.shards,
          started,
        }),
      );
      if (outcome === 'success') await decrypting;
      else await assert.rejects(decrypting, isCode(['EG_WRONG_KEY'], outcome));
      assert.ok(started!.workers.every(exited), `${outcome}: every worker ended`);
    } finally {
      await pkg.close();
    }
  }
  // Below the parallel threshold nothing starts.
  const pkg = await PackageFile.open(a.packagePath);
  try {
    const small = { engine: 'js', parallelFrom: Number.MAX_SAFE_INTEGER } as const;
    assert.equal(await on(small, async () => pkg.startDecryptWorkers(small)), undefined);
    // The native opener needs no workers.
    const native = { engine: 'native', parallelFrom: 0 } as const;
    if (NATIVE_AVAILABLE) assert.equal(await on(native, async () => pkg.startDecryptWorkers(native)), undefined);
  } finally {
    await pkg.close();
  }
});
