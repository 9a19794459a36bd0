/**
 * scripts/build-native.mjs, the package's install script: a build that cannot succeed must not
 * fail `npm install` (the JavaScript path takes over, and the script says so), unless
 * EDGEGUARD_NATIVE_REQUIRED=1 asks for the addon (CI does).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const SCRIPT = fileURLToPath(new URL('../../scripts/build-native.mjs', import.meta.url));

test('a failed native build warns and lets the install go on; required, it fails', async () => {
  // An empty directory has no binding.gyp: node-gyp fails there as it would without a compiler.
  const dir = await mkdtemp(join(tmpdir(), 'eg-build-native-'));
  try {
    const env = { ...process.env, EDGEGUARD_NATIVE_REQUIRED: '' };
    const soft = spawnSync(process.execPath, [SCRIPT], { cwd: dir, env, encoding: 'utf8' });
    assert.equal(soft.status, 0, soft.stderr);
    assert.match(
      soft.stderr,
      /native shard opener was not built; model verify and decrypt will use the slower JavaScript path/,
    );
    assert.match(soft.stderr, /npm run build:native/);
    const hard = spawnSync(process.execPath, [SCRIPT], {
      cwd: dir,
      env: { ...env, EDGEGUARD_NATIVE_REQUIRED: '1' },
      encoding: 'utf8',
    });
    assert.equal(hard.status, 1);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
