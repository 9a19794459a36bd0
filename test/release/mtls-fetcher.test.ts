/**
 * The tuf-js fetcher over mutual TLS against a real control plane: it downloads repository files
 * with the device certificate, enforces tuf-js's length limit, and refuses a server that does not
 * chain to the pinned fleet CA; an HTTP refusal is tuf-js's own DownloadHTTPError.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FleetCa } from '../../src/pki/index.ts';
import { initRepository, MtlsFetcher, releasePaths } from '../../src/release/index.ts';
import { tufServerPlugin } from '../../src/server/routes/tuf.ts';
import { tempDir } from '../helpers/workspace.ts';
import { startTestFleet } from '../server/fleet-helpers.ts';

test('the mTLS fetcher reads the repository as the device, within limits, from the pinned CA only', async (t) => {
  const dataDir = await tempDir(t);
  await initRepository({ dir: join(dataDir, 'releases') });
  const fleet = await startTestFleet({ dataDir, plugins: [tufServerPlugin({ dataDir })] });
  t.after(() => fleet.stop());
  const device = await fleet.deviceCredential();
  const url = `${fleet.server.url}/v1/tuf/metadata/1.root.json`;
  const expected = await readFile(join(releasePaths(join(dataDir, 'releases')).metadata, '1.root.json'));

  const fetcher = new MtlsFetcher({ ca: fleet.ca.rootPem, cert: device.cert, key: device.key });
  t.after(() => fetcher.close());
  assert.deepEqual(await fetcher.downloadBytes(url, 1 << 20), expected);
  await assert.rejects(
    fetcher.downloadBytes(url, 10),
    (e) => (e as Error).constructor.name === 'DownloadLengthMismatchError',
  );
  await assert.rejects(
    fetcher.downloadBytes(`${fleet.server.url}/v1/tuf/metadata/9.root.json`, 1 << 20),
    (e) => (e as Error).constructor.name === 'DownloadHTTPError' && (e as { statusCode: number }).statusCode === 404,
  );

  const otherCa = await FleetCa.create(join(dataDir, 'other-ca'), 'another-passphrase');
  const stranger = new MtlsFetcher({ ca: otherCa.rootPem, cert: device.cert, key: device.key });
  t.after(() => stranger.close());
  await assert.rejects(stranger.downloadBytes(url, 1 << 20), /fetch failed/);
  assert.throws(() => fetcher.fetch('http://127.0.0.1/v1/tuf/metadata/1.root.json'), /https only/);
});
