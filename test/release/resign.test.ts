/**
 * The online roles re-signed before they expire: a timestamp near its end gets a new version, a
 * snapshot near its own end does too (and the timestamp follows it), targets and root never; a
 * device that trusted the old state accepts the new one. The control plane does it on a timer
 * (short expiry here, the timer's effect awaited, no fixed sleep).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Metadata, MetadataKind } from '@tufjs/models';
import {
  addRelease,
  fetchRelease,
  initRepository,
  provisionTrustedRoot,
  publishRepository,
  readCurrentMetadata,
  releasePaths,
  resignOnlineMetadata,
} from '../../src/release/index.ts';
import { tufServerPlugin } from '../../src/server/routes/tuf.ts';
import { packBytes } from '../helpers/packages.ts';
import { serveDirectory } from '../helpers/static-server.ts';
import { eventually } from '../helpers/wait.ts';
import { tempDir, writeKeys } from '../helpers/workspace.ts';
import { startTestFleet } from '../server/fleet-helpers.ts';

const versions = async (dir: string) => {
  const m = await readCurrentMetadata(releasePaths(dir).metadata);
  return {
    root: m.root.signed.version,
    targets: m.targets.signed.version,
    snapshot: m.snapshot.signed.version,
    timestamp: m.timestamp.signed.version,
    timestampNames: m.timestamp.signed.snapshotMeta.version,
  };
};

test('timestamp and snapshot are re-signed with the online keys when due, and a device accepts them', async (t) => {
  const tmp = await tempDir(t);
  const dir = join(tmp, 'repo');
  const start = new Date();
  await initRepository({ dir, expirySeconds: { timestamp: 600, snapshot: 3600 }, now: start });
  const keys = await writeKeys(tmp);
  const pkg = await packBytes(tmp, Buffer.alloc(2000, 1), keys, { name: 'mnist', version: 3, file: 'mnist' });
  const target = await addRelease({ dir, packagePath: pkg.packagePath, version: 3 });
  await publishRepository(dir, start);
  const published = await versions(dir);

  // Nothing is due yet (the margins are half of each lifetime).
  assert.deepEqual(await resignOnlineMetadata(dir, start), {});
  // Past half the timestamp's lifetime: a new timestamp over the same snapshot.
  const later = new Date(start.getTime() + 400_000);
  assert.deepEqual(await resignOnlineMetadata(dir, later), { timestampVersion: published.timestamp + 1 });
  assert.deepEqual(await versions(dir), { ...published, timestamp: published.timestamp + 1 });
  // Past half the snapshot's lifetime: a new snapshot, and a timestamp naming it.
  const much = new Date(start.getTime() + 2000_000);
  assert.deepEqual(await resignOnlineMetadata(dir, much), {
    snapshotVersion: published.snapshot + 1,
    timestampVersion: published.timestamp + 2,
  });
  const now = await versions(dir);
  assert.deepEqual(now, {
    ...published,
    snapshot: published.snapshot + 1,
    timestamp: published.timestamp + 2,
    timestampNames: published.snapshot + 1,
  });

  // The re-signed state verifies as a device walks it.
  const server = await serveDirectory(t, releasePaths(dir).repository);
  const device = join(tmp, 'device');
  await provisionTrustedRoot(join(device, 'tuf'), await readFile(join(releasePaths(dir).metadata, '1.root.json')));
  const fetched = await fetchRelease({
    metadataDir: join(device, 'tuf'),
    metadataBaseUrl: `${server.url}/metadata`,
    targetBaseUrl: `${server.url}/targets`,
    downloadDir: join(device, 'download'),
    target: target.path,
    publisherKeys: [keys.signer.publicKey],
    minimumVersion: 0,
  });
  assert.equal(fetched.release.version, 3);
});

test('the control plane re-signs a short-lived timestamp on its timer, durably, before it expires', async (t) => {
  const dataDir = await tempDir(t);
  const dir = join(dataDir, 'releases');
  await initRepository({ dir, expirySeconds: { timestamp: 4 } });
  const first = (await versions(dir)).timestamp;
  const fleet = await startTestFleet({ dataDir, plugins: [tufServerPlugin({ dataDir, resignIntervalMs: 100 })] });
  t.after(() => fleet.stop());
  const renewed = await eventually('a re-signed timestamp', async () => {
    const text = await readFile(join(releasePaths(dir).metadata, 'timestamp.json'), 'utf8');
    const ts = Metadata.fromJSON(MetadataKind.Timestamp, JSON.parse(text));
    return ts.signed.version > first ? ts : undefined;
  });
  assert.ok(!renewed.signed.isExpired(new Date()));
});
