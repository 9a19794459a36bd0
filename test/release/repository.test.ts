/** The release repository: real TUF metadata, signed and checked with @tufjs/models. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Metadata, MetadataKind } from '@tufjs/models';
import { tempDir, writeKeys } from '../helpers/workspace.ts';
import { packBytes } from '../helpers/packages.ts';
import {
  addRelease,
  initRepository,
  publishRepository,
  readCurrentMetadata,
  releasePaths,
  rotateRoot,
} from '../../src/release/index.ts';
import { isEdgeguardError } from '../../src/errors/index.ts';
import { generateSigningKey } from '../../src/crypto/index.ts';

const DAY = 24 * 3600 * 1000;

test('init writes version 1 of every role, signed, with the configured expiries and 0600 keys', async (t) => {
  const dir = join(await tempDir(t), 'repo');
  const now = new Date('2026-01-01T00:00:00Z');
  const { paths, keyIds } = await initRepository({ dir, now, thresholds: { root: 2 } });
  const md = await readCurrentMetadata(paths.metadata);
  assert.deepEqual(
    [md.root, md.targets, md.snapshot, md.timestamp].map((m) => m.signed.version),
    [1, 1, 1, 1],
  );
  assert.equal(md.root.signed.roles.root!.threshold, 2);
  assert.equal(keyIds.root.length, 2);
  md.root.verifyDelegate(MetadataKind.Root, md.root);
  md.root.verifyDelegate(MetadataKind.Targets, md.targets);
  md.root.verifyDelegate(MetadataKind.Snapshot, md.snapshot);
  md.root.verifyDelegate(MetadataKind.Timestamp, md.timestamp);
  assert.equal(new Date(md.root.signed.expires).getTime() - now.getTime(), 365 * DAY);
  assert.equal(new Date(md.targets.signed.expires).getTime() - now.getTime(), 90 * DAY);
  assert.equal(new Date(md.snapshot.signed.expires).getTime() - now.getTime(), 7 * DAY);
  assert.equal(new Date(md.timestamp.signed.expires).getTime() - now.getTime(), 1 * DAY);
  for (const keyDir of [paths.offlineKeys, paths.onlineKeys]) {
    for (const name of await readdir(keyDir)) {
      assert.equal((await stat(join(keyDir, name))).mode & 0o777, 0o600, name);
    }
  }
  assert.deepEqual((await readdir(paths.onlineKeys)).map((n) => n.split('-')[0]).sort(), ['snapshot', 'timestamp']);
  assert.deepEqual((await readdir(paths.offlineKeys)).map((n) => n.split('-')[0]).sort(), ['root', 'root', 'targets']);
  // Nothing secret where the repository is served from.
  const served = await readdir(paths.repository, { recursive: true });
  assert.ok(served.every((n) => !n.endsWith('.pem')));
});

test('init takes other expiries and refuses to overwrite a workspace', async (t) => {
  const dir = join(await tempDir(t), 'repo');
  const now = new Date('2026-01-01T00:00:00Z');
  await initRepository({ dir, now, expirySeconds: { timestamp: 3600 } });
  const md = await readCurrentMetadata(releasePaths(dir).metadata);
  assert.equal(new Date(md.timestamp.signed.expires).getTime() - now.getTime(), 3600 * 1000);
  await assert.rejects(initRepository({ dir }), (e) => isEdgeguardError(e, 'EG_EXISTS'));
});

test('add stages a package and its signature with release metadata; publish signs new versions', async (t) => {
  const tmp = await tempDir(t);
  const dir = join(tmp, 'repo');
  await initRepository({ dir });
  const keys = await writeKeys(tmp);
  const pkg = await packBytes(tmp, Buffer.alloc(5000, 7), keys, { name: 'mnist', version: 3, file: 'mnist' });
  const target = await addRelease({ dir, packagePath: pkg.packagePath, version: 3, minVersion: 2 });
  const custom = (target.custom as { edgeguard: Record<string, unknown> }).edgeguard;
  assert.equal(custom.kind, 'model');
  assert.equal(custom.version, 3);
  assert.equal(custom.minVersion, 2);
  assert.match(String(custom.headerSha256), /^[0-9a-f]{64}$/);

  const published = await publishRepository(dir);
  assert.deepEqual([published.targetsVersion, published.snapshotVersion, published.timestampVersion], [2, 2, 2]);
  const md = await readCurrentMetadata(releasePaths(dir).metadata);
  md.root.verifyDelegate(MetadataKind.Targets, md.targets);
  const listed = Object.keys(md.targets.signed.targets).sort();
  assert.equal(listed.length, 2);
  const sigPath = listed.find((p) => p.endsWith('.sig.json'))!;
  assert.deepEqual((custom.signature as { target: string }).target, sigPath);
  // The file under its hash-prefixed name is the package, byte for byte.
  const entry = md.targets.signed.targets[target.path]!;
  const served = join(
    releasePaths(dir).targets,
    'mnist',
    '3',
    `${entry.hashes.sha256}.${target.path.split('/').pop()}`,
  );
  assert.deepEqual(await readFile(served), await readFile(pkg.packagePath));

  // A second publish keeps the targets and bumps every version again.
  const again = await publishRepository(dir);
  assert.deepEqual([again.targetsVersion, again.published.length], [3, 0]);
  const md3 = await readCurrentMetadata(releasePaths(dir).metadata);
  assert.equal(Object.keys(md3.targets.signed.targets).length, 2);
});

test('add refuses a version that is not the signed one, a minimum above it, and an untrusted publisher', async (t) => {
  const tmp = await tempDir(t);
  const dir = join(tmp, 'repo');
  await initRepository({ dir });
  const keys = await writeKeys(tmp);
  const pkg = await packBytes(tmp, Buffer.alloc(100, 1), keys, { name: 'm', version: 3 });
  await assert.rejects(addRelease({ dir, packagePath: pkg.packagePath, version: 4 }), (e) =>
    isEdgeguardError(e, 'EG_USAGE'),
  );
  await assert.rejects(addRelease({ dir, packagePath: pkg.packagePath, version: 3, minVersion: 5 }), (e) =>
    isEdgeguardError(e, 'EG_USAGE'),
  );
  const stranger = generateSigningKey().publicKey;
  await assert.rejects(
    addRelease({ dir, packagePath: pkg.packagePath, version: 3, publisherKeys: [stranger] }),
    (e) => isEdgeguardError(e) && e.code.startsWith('EG_SIGNATURE'),
  );
  await addRelease({ dir, packagePath: pkg.packagePath, version: 3, publisherKeys: [keys.signer.publicKey] });
});

test('rotate-root: version 2 is signed by the old and the new root keys; the old keys retire', async (t) => {
  const dir = join(await tempDir(t), 'repo');
  const { paths, keyIds } = await initRepository({ dir });
  const before = await readCurrentMetadata(paths.metadata);
  const rotated = await rotateRoot(dir);
  assert.equal(rotated.version, 2);
  assert.deepEqual(rotated.oldKeyIds, keyIds.root);
  const v2 = Metadata.fromJSON(
    MetadataKind.Root,
    JSON.parse(await readFile(join(paths.metadata, '2.root.json'), 'utf8')),
  );
  before.root.verifyDelegate(MetadataKind.Root, v2); // a client on version 1 accepts it
  v2.verifyDelegate(MetadataKind.Root, v2); // and it meets its own threshold
  assert.deepEqual(v2.signed.roles.root!.keyIDs, rotated.newKeyIds);
  assert.ok(!(rotated.oldKeyIds[0]! in v2.signed.keys));
  assert.equal((await readdir(paths.retiredKeys)).length, 1);
  // The other roles keep their keys: publishing still works.
  await publishRepository(dir);
  const after = await readCurrentMetadata(paths.metadata);
  after.root.verifyDelegate(MetadataKind.Timestamp, after.timestamp);
});
