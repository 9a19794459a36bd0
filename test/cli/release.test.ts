/** `edgeguard release` through the compiled CLI (npm run build first): init, add, publish, rotate-root. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { MetadataKind } from '@tufjs/models';
import { runCli } from '../helpers/cli.ts';
import { tempDir, writeKeys } from '../helpers/workspace.ts';
import { packBytes } from '../helpers/packages.ts';
import { readCurrentMetadata, releasePaths } from '../../src/release/index.ts';

test('release init, add, publish and rotate-root from the command line', async (t) => {
  const tmp = await tempDir(t);
  const dir = join(tmp, 'repo');
  const init = await runCli([
    '--json',
    'release',
    'init',
    '--dir',
    dir,
    '--timestamp-expiry',
    '6h',
    '--threshold',
    'root=2',
  ]);
  assert.equal(init.code, 0, init.stderr);
  assert.equal(JSON.parse(init.stdout).keyIds.root.length, 2);

  const keys = await writeKeys(tmp);
  const pkg = await packBytes(tmp, Buffer.alloc(3000, 5), keys, { name: 'mnist', version: 3, file: 'mnist' });
  const wrong = await runCli(['release', 'add', pkg.packagePath, '--version', '2', '--dir', dir]);
  assert.equal(wrong.code, 2);
  assert.match(wrong.stderr, /EG_USAGE/);
  const add = await runCli([
    'release',
    'add',
    pkg.packagePath,
    '--version',
    '3',
    '--min-version',
    '2',
    '--pub',
    keys.publicKeyPath,
    '--dir',
    dir,
  ]);
  assert.equal(add.code, 0, add.stderr);

  const publish = await runCli(['--json', 'release', 'publish', '--dir', dir]);
  assert.equal(publish.code, 0, publish.stderr);
  assert.equal(JSON.parse(publish.stdout).targetsVersion, 2);
  const md = await readCurrentMetadata(releasePaths(dir).metadata);
  md.root.verifyDelegate(MetadataKind.Targets, md.targets);
  assert.equal(Object.keys(md.targets.signed.targets).length, 2);

  const rotate = await runCli(['--json', 'release', 'rotate-root', '--dir', dir]);
  assert.equal(rotate.code, 0, rotate.stderr);
  assert.equal(JSON.parse(rotate.stdout).version, 2);
});

test('release init refuses a bad threshold and a bad duration', async (t) => {
  const dir = join(await tempDir(t), 'repo');
  for (const args of [
    ['--threshold', 'nobody=1'],
    ['--snapshot-expiry', 'soon'],
  ]) {
    const r = await runCli(['release', 'init', '--dir', dir, ...args]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /EG_USAGE/);
  }
});
