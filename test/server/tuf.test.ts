/** /v1/tuf/: the release repository served read-only by the control plane, behind the certificate check. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startTestFleet } from './fleet-helpers.ts';
import { tempDir } from '../helpers/workspace.ts';
import { tufServerPlugin, releaseRepositoryDir } from '../../src/server/routes/tuf.ts';
import { initRepository } from '../../src/release/index.ts';

test('the control plane serves repository files to a device, nothing else, and nothing without a certificate', async (t) => {
  const dataDir = await tempDir(t, 'eg-tuf-');
  await initRepository({ dir: join(dataDir, 'releases') });
  const fleet = await startTestFleet({ dataDir, plugins: [tufServerPlugin({ dataDir })] });
  t.after(() => fleet.stop());
  const device = await fleet.deviceCredential();
  const client = fleet.client(device);

  const root = await client.send<Buffer>('GET', '/v1/tuf/metadata/1.root.json');
  assert.equal(root.status, 200);
  assert.deepEqual(root.body, await readFile(join(releaseRepositoryDir(dataDir), 'metadata', '1.root.json')));
  assert.equal((await client.send('GET', '/v1/tuf/metadata/9.root.json')).status, 404);

  // The keys sit beside the repository; no spelling of a path reaches them.
  for (const path of [
    '/v1/tuf/metadata/..%2f..%2fkeys%2fonline',
    '/v1/tuf/targets/%2e%2e/%2e%2e/release.json',
    '/v1/tuf/targets/..%2F..%2Frelease.json',
    '/v1/tuf/keys/online',
    '/v1/tuf/metadata/root.json%00',
  ]) {
    assert.equal((await client.send('GET', path)).status, 404, path);
  }
  assert.equal((await fleet.client().send('GET', '/v1/tuf/metadata/1.root.json')).status, 401);
});
