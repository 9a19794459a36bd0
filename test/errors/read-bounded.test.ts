/**
 * Files read whole are read with a cap: a file past it is EG_FILE_TOO_LARGE before any of it is
 * buffered (a 700 MB `.egm.sig.json` used to cost a 690 MB peak and `EG_IO (unknown error)`).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { isEdgeguardError, readBounded, readBoundedSync } from '../../src/errors/index.ts';
import { readSignatureFile } from '../../src/model/index.ts';
import { tempDir } from '../helpers/workspace.ts';

/** A sparse file of `size` bytes: no disk, no memory, the size a reader sees. */
async function sparseFile(path: string, size: number): Promise<void> {
  const h = await open(path, 'w');
  await h.truncate(size);
  await h.close();
}

test('a 700 MB signature file is refused with EG_FILE_TOO_LARGE, not read', async (t) => {
  const dir = await tempDir(t, 'eg-bounded-');
  const sig = join(dir, 'm.egm.sig.json');
  await sparseFile(sig, 700 * 1024 * 1024);
  const before = process.memoryUsage().arrayBuffers;
  await assert.rejects(readSignatureFile(sig), (e) => isEdgeguardError(e, 'EG_FILE_TOO_LARGE'));
  // Nothing close to the file's size was buffered (generous: 64 MiB).
  assert.ok(process.memoryUsage().arrayBuffers - before < 64 * 1024 * 1024);
});

test('readBounded: contents up to the cap, EG_FILE_TOO_LARGE past it, typed errors for missing files', async (t) => {
  const dir = await tempDir(t, 'eg-bounded-');
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ maxLength: 4096 }), fc.nat(4096), async (bytes, cap) => {
      const path = join(dir, 'f');
      await writeFile(path, bytes);
      if (bytes.length <= cap) {
        assert.deepEqual(new Uint8Array(await readBounded(path, cap, 'read the test file')), bytes);
      } else {
        await assert.rejects(readBounded(path, cap, 'read the test file'), (e) =>
          isEdgeguardError(e, 'EG_FILE_TOO_LARGE'),
        );
      }
    }),
    { numRuns: 200 },
  );
  await assert.rejects(readBounded(join(dir, 'missing'), 10, 'read'), (e) => isEdgeguardError(e, 'EG_NOT_FOUND'));
  await assert.rejects(readBounded(dir, 10, 'read'), (e) => isEdgeguardError(e, 'EG_IO'));
});

test('a file whose size says 0 but keeps growing (/proc style) is still capped', async () => {
  await assert.rejects(readBounded('/dev/zero', 1024, 'read'), (e) => isEdgeguardError(e, 'EG_FILE_TOO_LARGE'));
});

test('readBoundedSync: the same contents and the same errors as readBounded', async (t) => {
  const dir = await tempDir(t, 'eg-bounded-');
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ maxLength: 4096 }), fc.nat(4096), async (bytes, cap) => {
      const path = join(dir, 'f');
      await writeFile(path, bytes);
      if (bytes.length <= cap) {
        assert.deepEqual(new Uint8Array(readBoundedSync(path, cap, 'read the test file')), bytes);
      } else {
        assert.throws(
          () => readBoundedSync(path, cap, 'read the test file'),
          (e) => isEdgeguardError(e, 'EG_FILE_TOO_LARGE'),
        );
      }
    }),
    { numRuns: 200 },
  );
  const big = join(dir, 'big');
  await sparseFile(big, 700 * 1024 * 1024);
  const before = process.memoryUsage().arrayBuffers;
  assert.throws(
    () => readBoundedSync(big, 1024 * 1024, 'read'),
    (e) => isEdgeguardError(e, 'EG_FILE_TOO_LARGE') && /734003200 bytes/.test(e.message),
  );
  assert.ok(process.memoryUsage().arrayBuffers - before < 64 * 1024 * 1024);
  assert.throws(
    () => readBoundedSync('/dev/zero', 1024, 'read'),
    (e) => isEdgeguardError(e, 'EG_FILE_TOO_LARGE'),
  );
  assert.throws(
    () => readBoundedSync(join(dir, 'missing'), 10, 'read'),
    (e) => isEdgeguardError(e, 'EG_NOT_FOUND'),
  );
  assert.throws(
    () => readBoundedSync(dir, 10, 'read'),
    (e) => isEdgeguardError(e, 'EG_IO'),
  );
});
