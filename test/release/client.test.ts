/**
 * The device's release check against a real repository served over HTTP on 127.0.0.1: tuf-js's
 * Updater, then the package's OMS signature. Attacks are played by a mirror that serves other
 * bytes; each is refused with a typed reason and leaves the device's trusted metadata unchanged.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { lstat, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Metadata, MetaFile, Timestamp } from '@tufjs/models';
import { tempDir, writeKeys } from '../helpers/workspace.ts';
import { packBytes } from '../helpers/packages.ts';
import { serveDirectory } from '../helpers/static-server.ts';
import {
  addRelease,
  fetchRelease,
  initRepository,
  provisionTrustedRoot,
  publishRepository,
  readCurrentMetadata,
  readRoleKeys,
  releasePaths,
  rotateRoot,
  type FetchReleaseOptions,
  type InitOptions,
} from '../../src/release/index.ts';
import { signerOf } from '../../src/release/keys.ts';
import { isEdgeguardError } from '../../src/errors/index.ts';
import { generateSigningKey } from '../../src/crypto/index.ts';

async function fixture(t: TestContext, init: Partial<InitOptions> = {}) {
  const tmp = await tempDir(t);
  const dir = join(tmp, 'repo');
  const paths = releasePaths(dir);
  await initRepository({ dir, ...init });
  const timestampV1 = await readFile(join(paths.metadata, 'timestamp.json'));
  const keys = await writeKeys(tmp);
  const pkg = await packBytes(tmp, Buffer.alloc(20000, 9), keys, { name: 'mnist', version: 3, file: 'mnist' });
  const target = await addRelease({ dir, packagePath: pkg.packagePath, version: 3, minVersion: 2 });
  await publishRepository(dir);
  const server = await serveDirectory(t, paths.repository);
  const device = join(tmp, 'device');
  await provisionTrustedRoot(join(device, 'tuf'), await readFile(join(paths.metadata, '1.root.json')));
  const options: FetchReleaseOptions = {
    metadataDir: join(device, 'tuf'),
    metadataBaseUrl: `${server.url}/metadata`,
    targetBaseUrl: `${server.url}/targets`,
    downloadDir: join(device, 'download'),
    target: target.path,
    publisherKeys: [keys.signer.publicKey],
    minimumVersion: 0,
  };
  return { dir, paths, server, options, target, pkg, timestampV1 };
}

async function trustedState(dir: string): Promise<Record<string, string>> {
  const names = (await readdir(dir)).sort();
  return Object.fromEntries(await Promise.all(names.map(async (n) => [n, await readFile(join(dir, n), 'utf8')])));
}

/** `unchanged`: the trusted files the refusal must not touch (all of them unless named). */
async function assertRefused(o: FetchReleaseOptions, reason: string, unchanged?: string[]): Promise<void> {
  const pick = async () => {
    const all = await trustedState(o.metadataDir);
    return unchanged ? Object.fromEntries(unchanged.map((n) => [n, all[n]])) : all;
  };
  const before = await pick();
  await assert.rejects(fetchRelease(o), (e) => {
    assert.ok(isEdgeguardError(e, 'EG_RELEASE_REFUSED'), String(e));
    assert.equal(e.details?.reason, reason, e.message);
    return true;
  });
  assert.deepEqual(await pick(), before, 'trusted metadata changed');
  const downloads = await readdir(o.downloadDir).catch(() => []);
  assert.deepEqual(downloads, [], 'an unverified file was left behind');
}

/** A timestamp signed by the repository's real timestamp keys (or `signers` of them). */
async function signedTimestamp(dir: string, version: number, snapshotVersion: number, expires: Date, signers?: number) {
  const keys = await readRoleKeys(releasePaths(dir), 'timestamp');
  const md = new Metadata(
    new Timestamp({
      version,
      specVersion: '1.0.31',
      expires: expires.toISOString().replace(/\.\d+Z$/, 'Z'),
      snapshotMeta: new MetaFile({ version: snapshotVersion }),
    }),
  );
  for (const k of keys.slice(0, signers ?? keys.length)) md.sign(signerOf(k));
  return Buffer.from(JSON.stringify(md.toJSON()));
}

const TOMORROW = new Date(Date.now() + 24 * 3600 * 1000);

test('a device downloads a published release, verifies TUF hashes and the OMS signature', async (t) => {
  const f = await fixture(t);
  const fetched = await fetchRelease(f.options);
  assert.equal(fetched.release.version, 3);
  assert.equal(fetched.release.minVersion, 2);
  assert.equal(fetched.verified.header.metadata.name, 'mnist');
  assert.deepEqual(await readFile(fetched.packagePath), await readFile(f.pkg.packagePath));
  const state = await trustedState(f.options.metadataDir);
  assert.deepEqual(Object.keys(state).sort(), ['root.json', 'snapshot.json', 'targets.json', 'timestamp.json']);
});

test('trusted metadata is replaced by rename, never written in place (a crash cannot truncate it)', async (t) => {
  const f = await fixture(t);
  // A symlink is followed by an in-place write but replaced by a rename: the outside file stays.
  const outside = join(f.dir, 'outside.json');
  await writeFile(outside, 'untouched');
  await symlink(outside, join(f.options.metadataDir, 'timestamp.json'));
  await fetchRelease(f.options);
  assert.equal(await readFile(outside, 'utf8'), 'untouched');
  assert.ok((await lstat(join(f.options.metadataDir, 'timestamp.json'))).isFile());
  assert.deepEqual(
    (await readdir(f.options.metadataDir)).filter((n) => n.includes('.tmp-')),
    [],
  );
});

test('rollback: an older timestamp than the trusted one is refused', async (t) => {
  const f = await fixture(t);
  await fetchRelease(f.options);
  f.server.overrides.set('/metadata/timestamp.json', f.timestampV1);
  await assertRefused({ ...f.options, downloadDir: join(f.dir, 'dl2') }, 'rollback');
});

test('rollback: a new timestamp naming an older snapshot is refused', async (t) => {
  const f = await fixture(t);
  await fetchRelease(f.options);
  f.server.overrides.set('/metadata/timestamp.json', await signedTimestamp(f.dir, 5, 1, TOMORROW));
  await assertRefused({ ...f.options, downloadDir: join(f.dir, 'dl2') }, 'rollback');
});

test('freeze: an expired timestamp is refused', async (t) => {
  const f = await fixture(t);
  await fetchRelease(f.options);
  const current = await readCurrentMetadata(f.paths.metadata);
  const expired = await signedTimestamp(f.dir, 9, current.snapshot.signed.version, new Date(Date.now() - 1000));
  f.server.overrides.set('/metadata/timestamp.json', expired);
  await assertRefused({ ...f.options, downloadDir: join(f.dir, 'dl2') }, 'expired');
});

test('below threshold: a timestamp signed by one of two required keys is refused', async (t) => {
  const f = await fixture(t, { thresholds: { timestamp: 2 } });
  await fetchRelease(f.options);
  const current = await readCurrentMetadata(f.paths.metadata);
  const oneKey = await signedTimestamp(f.dir, 9, current.snapshot.signed.version, TOMORROW, 1);
  f.server.overrides.set('/metadata/timestamp.json', oneKey);
  await assertRefused({ ...f.options, downloadDir: join(f.dir, 'dl2') }, 'signature');
});

function servedTargetPath(f: Awaited<ReturnType<typeof fixture>>): string {
  const [dir, version, name] = f.target.path.split('/');
  return `/targets/${dir}/${version}/${f.target.hashes.sha256}.${name}`;
}

test('arbitrary package: other bytes of the signed length are refused by hash', async (t) => {
  const f = await fixture(t);
  await fetchRelease({ ...f.options, downloadDir: join(f.dir, 'first') });
  const real = await readFile(f.pkg.packagePath);
  const other = Buffer.from(real);
  other[other.length - 1]! ^= 1;
  f.server.overrides.set(servedTargetPath(f), other);
  await assertRefused(f.options, 'hash-mismatch');
});

test('endless data: a target longer than its signed length is refused', async (t) => {
  const f = await fixture(t);
  await fetchRelease({ ...f.options, downloadDir: join(f.dir, 'first') });
  const real = await readFile(f.pkg.packagePath);
  f.server.overrides.set(servedTargetPath(f), Buffer.concat([real, Buffer.alloc(1 << 20)]));
  await assertRefused(f.options, 'too-large');
});

test('below minimum: a validly signed release older than the device floor is refused', async (t) => {
  const f = await fixture(t);
  await fetchRelease({ ...f.options, downloadDir: join(f.dir, 'first') });
  await assertRefused({ ...f.options, minimumVersion: 4 }, 'below-minimum');
});

test('a package not signed by a trusted publisher key is refused after TUF', async (t) => {
  const f = await fixture(t);
  await fetchRelease({ ...f.options, downloadDir: join(f.dir, 'first') });
  const stranger = generateSigningKey().publicKey;
  await assertRefused({ ...f.options, publisherKeys: [stranger] }, 'package-signature');
});

test('a target the repository does not list is refused', async (t) => {
  const f = await fixture(t);
  await fetchRelease({ ...f.options, downloadDir: join(f.dir, 'first') });
  await assertRefused({ ...f.options, target: 'mnist/4/mnist.egm' }, 'unknown-target');
});

test('metadata that does not parse is refused as malformed', async (t) => {
  const f = await fixture(t);
  await fetchRelease({ ...f.options, downloadDir: join(f.dir, 'first') });
  for (const bytes of ['', '{', '[]', '{"signed":{},"signatures":[]}', 'null']) {
    f.server.overrides.set('/metadata/timestamp.json', Buffer.from(bytes));
    await assertRefused(f.options, 'malformed');
  }
});

test('root rotation: a device on root 1 walks to root 2; a root 2 without the old keys is refused', async (t) => {
  const f = await fixture(t);
  await fetchRelease({ ...f.options, downloadDir: join(f.dir, 'first') });
  const rootV2 = join(f.paths.metadata, '2.root.json');

  await rotateRoot(f.dir);
  const genuine = await readFile(rootV2);
  // Signed by the new keys only: what an attacker holding just fresh keys could make.
  const forged = JSON.parse(genuine.toString('utf8')) as {
    signed: { roles: { root: { keyids: string[] } } };
    signatures: Array<{ keyid: string }>;
  };
  const newIds = new Set(forged.signed.roles.root.keyids);
  forged.signatures = forged.signatures.filter((s) => newIds.has(s.keyid));
  f.server.overrides.set('/metadata/2.root.json', Buffer.from(JSON.stringify(forged)));
  await assertRefused({ ...f.options, downloadDir: join(f.dir, 'dl2') }, 'signature');

  f.server.overrides.delete('/metadata/2.root.json');
  await publishRepository(f.dir);
  await fetchRelease({ ...f.options, downloadDir: join(f.dir, 'dl3') });
  const trusted = JSON.parse(await readFile(join(f.options.metadataDir, 'root.json'), 'utf8'));
  assert.equal(trusted.signed.version, 2);
});

test('mix-and-match: a snapshot or targets file of another version than the one above names is refused', async (t) => {
  // What is refused and what stays: the roles above it are genuine and kept (TUF 5.4.5, 5.5.7).
  const cases = [
    { role: 'snapshot', unchanged: ['snapshot.json', 'targets.json'] },
    { role: 'targets', unchanged: ['targets.json'] },
  ];
  for (const { role, unchanged } of cases) {
    const f = await fixture(t);
    await fetchRelease({ ...f.options, downloadDir: join(f.dir, 'first') });
    await publishRepository(f.dir);
    // Version 2, validly signed, served where version 3 is named.
    f.server.overrides.set(`/metadata/3.${role}.json`, await readFile(join(f.paths.metadata, `2.${role}.json`)));
    await assertRefused({ ...f.options, downloadDir: join(f.dir, 'dl2') }, 'mix-and-match', unchanged);
  }
});

test('endless data: metadata longer than the client accepts is refused', async (t) => {
  const f = await fixture(t);
  await fetchRelease({ ...f.options, downloadDir: join(f.dir, 'first') });
  f.server.overrides.set('/metadata/timestamp.json', Buffer.alloc(1 << 20, 0x20));
  await assertRefused({ ...f.options, downloadDir: join(f.dir, 'dl2') }, 'too-large');
});
