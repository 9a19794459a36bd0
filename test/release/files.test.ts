/** The release workspace's own files: durable replacement, settings, staged targets, durations. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tempDir, writeKeys } from '../helpers/workspace.ts';
import { packBytes } from '../helpers/packages.ts';
import { replaceFileDurablySync } from '../../src/release/durable-file.ts';
import { addRelease, initRepository, parseDuration, publishRepository, releasePaths } from '../../src/release/index.ts';
import { isEdgeguardError } from '../../src/errors/index.ts';

test('a failed replacement leaves the old file and no temporary file', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'root.json');
  replaceFileDurablySync(path, 'old');
  replaceFileDurablySync(path, 'new');
  assert.equal(await readFile(path, 'utf8'), 'new');
  // A parent that is a file fails for every user (root included), at open and at cleanup alike.
  assert.throws(
    () => replaceFileDurablySync(join(path, 'x.json'), 'other'),
    (e) => isEdgeguardError(e, 'EG_IO'),
  );
  assert.equal(await readFile(path, 'utf8'), 'new');
  assert.deepEqual(await readdir(dir), ['root.json']);
});

test('durations: days, hours, minutes, seconds; anything else is a usage error', () => {
  assert.equal(parseDuration('365d'), 365 * 86400);
  assert.equal(parseDuration('12h'), 43200);
  assert.equal(parseDuration('30m'), 1800);
  assert.equal(parseDuration('90'), 90);
  for (const bad of ['', '0', '0d', '-1d', '1w', '1.5d', 'soon', '1 d x']) {
    assert.throws(
      () => parseDuration(bad),
      (e) => isEdgeguardError(e, 'EG_USAGE'),
      bad,
    );
  }
});

test('a damaged settings or staged-targets file is refused with a typed error, not a stack', async (t) => {
  const dir = join(await tempDir(t), 'repo');
  await initRepository({ dir });
  const paths = releasePaths(dir);
  const settings = await readFile(paths.settings, 'utf8');
  for (const bad of ['', '{', '{"expirySeconds":{}}', JSON.stringify({ ...JSON.parse(settings), extra: 1 })]) {
    await writeFile(paths.settings, bad);
    await assert.rejects(publishRepository(dir), (e) => isEdgeguardError(e, 'EG_CONFIG'), bad);
  }
  await writeFile(paths.settings, settings);
  for (const bad of ['{', '{"a/b": {"length": "x"}}', '[1]']) {
    await writeFile(paths.staged, bad);
    await assert.rejects(publishRepository(dir), (e) => isEdgeguardError(e, 'EG_FORMAT'), bad);
  }
});

test('a smoke-test input becomes a target named in the package target', async (t) => {
  const tmp = await tempDir(t);
  const dir = join(tmp, 'repo');
  await initRepository({ dir });
  const keys = await writeKeys(tmp);
  const pkg = await packBytes(tmp, Buffer.alloc(500, 2), keys, { name: 'mnist', version: 1 });
  const input = join(tmp, 'seven.png');
  await writeFile(input, Buffer.from('not really a png'));
  const target = await addRelease({
    dir,
    packagePath: pkg.packagePath,
    version: 1,
    kind: 'model',
    smokeTest: { inputPath: input, expectedLabel: '7' },
  });
  const custom = (target.custom as { edgeguard: { smokeTest: { target: string; expectedLabel: string } } }).edgeguard;
  assert.deepEqual(custom.smokeTest, { target: 'mnist/1/smoke-seven.png', expectedLabel: '7' });
  const published = await publishRepository(dir);
  assert.equal(published.published.length, 3);
});
