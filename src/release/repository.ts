/**
 * The release repository: TUF metadata built and signed with @tufjs/models (TUF specification 1.0,
 * sections 4 "Document formats" and 6 "Usage"). `initRepository` makes the keys and version 1 of
 * every role; `publishRepository` signs what `addRelease` staged as new targets, snapshot and
 * timestamp versions; `rotateRoot` makes a root version signed by the old and the new root keys,
 * so a client that trusts only the old root can walk to the new one (section 5.3.4).
 */
import { mkdir, readdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type Key, Metadata, MetaFile, Root, Snapshot, Targets, Timestamp, type TargetFile } from '@tufjs/models';
import { syncDirectory } from '../crypto/index.ts';
import { EdgeguardError, fsError } from '../errors/index.ts';
import { generateRoleKey, readRoleKey, signerOf, writeRoleKey, type RoleKey } from './keys.ts';
import { keyDirFor, releasePaths, ROLES, type ReleasePaths, type RoleName } from './layout.ts';
import { readCurrentMetadata, writeMetadata } from './metadata-files.ts';
import { DEFAULT_EXPIRY_SECONDS, readSettings, type ReleaseSettings } from './settings.ts';
import { readStagedTargets, clearStagedTargets } from './staging.ts';

export const TUF_SPEC_VERSION = '1.0.31';

export interface InitOptions {
  dir: string;
  expirySeconds?: Partial<Record<RoleName, number>>;
  /** Signatures each role needs; as many keys are made. Default 1 each. */
  thresholds?: Partial<Record<RoleName, number>>;
  now?: Date;
}

export interface InitResult {
  paths: ReleasePaths;
  keyIds: Record<RoleName, string[]>;
}

function expiresAt(now: Date, seconds: number): string {
  // TUF dates are UTC without fractional seconds (section 4.2).
  return new Date(Math.floor(now.getTime() / 1000) * 1000 + seconds * 1000).toISOString().replace('.000Z', 'Z');
}

async function writeNewKeys(paths: ReleasePaths, role: RoleName, count: number): Promise<RoleKey[]> {
  const dir = keyDirFor(paths, role);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const keys: RoleKey[] = [];
  for (let i = 0; i < count; i++) {
    const k = generateRoleKey();
    await writeRoleKey(join(dir, `${role}-${k.key.keyID.slice(0, 16)}.pem`), k);
    keys.push(k);
  }
  return keys;
}

/** Every key of `role` in its key directory (files ROLE-KEYID.pem). */
export async function readRoleKeys(paths: ReleasePaths, role: RoleName): Promise<RoleKey[]> {
  const dir = keyDirFor(paths, role);
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => n.startsWith(`${role}-`) && n.endsWith('.pem')).sort();
  } catch (e) {
    throw fsError(e, dir, `read the ${role} keys`);
  }
  return Promise.all(names.map((n) => readRoleKey(join(dir, n))));
}

/**
 * Root metadata from its keys per role (section 4.3). Built as JSON and parsed because
 * @tufjs/models does not export its Role class.
 */
function buildRoot(
  version: number,
  expires: string,
  keys: Record<RoleName, Key[]>,
  thresholds: Record<RoleName, number>,
): Root {
  const allKeys = ROLES.flatMap((r) => keys[r]);
  return Root.fromJSON({
    _type: 'root',
    spec_version: TUF_SPEC_VERSION,
    version,
    expires,
    consistent_snapshot: true,
    keys: Object.fromEntries(allKeys.map((k) => [k.keyID, k.toJSON()])),
    roles: Object.fromEntries(ROLES.map((r) => [r, { keyids: keys[r].map((k) => k.keyID), threshold: thresholds[r] }])),
  });
}

function signWith<T extends Root | Targets | Snapshot | Timestamp>(md: Metadata<T>, keys: RoleKey[]): Metadata<T> {
  for (const k of keys) md.sign(signerOf(k));
  return md;
}

export async function initRepository(o: InitOptions): Promise<InitResult> {
  const paths = releasePaths(o.dir);
  const now = o.now ?? new Date();
  const settings: ReleaseSettings = {
    expirySeconds: { ...DEFAULT_EXPIRY_SECONDS, ...o.expirySeconds },
    thresholds: { root: 1, targets: 1, snapshot: 1, timestamp: 1, ...o.thresholds },
  };
  await mkdir(o.dir, { recursive: true });
  try {
    await writeFile(paths.settings, JSON.stringify(settings, null, 2) + '\n', { flag: 'wx' });
  } catch (e) {
    throw fsError(e, paths.settings, 'create the release settings');
  }
  await mkdir(paths.metadata, { recursive: true });
  await mkdir(paths.targets, { recursive: true });
  const keys = {} as Record<RoleName, RoleKey[]>;
  for (const role of ROLES) keys[role] = await writeNewKeys(paths, role, settings.thresholds[role]);

  const publicKeys = Object.fromEntries(ROLES.map((r) => [r, keys[r].map((k) => k.key)])) as Record<RoleName, Key[]>;
  const root = buildRoot(1, expiresAt(now, settings.expirySeconds.root), publicKeys, settings.thresholds);
  writeMetadata(paths.metadata, signWith(new Metadata(root), keys.root));
  await publishSigned(paths, settings, now, {
    targetsVersion: 1,
    snapshotVersion: 1,
    timestampVersion: 1,
    targets: {},
  });
  const keyIds = Object.fromEntries(ROLES.map((r) => [r, keys[r].map((k) => k.key.keyID)])) as InitResult['keyIds'];
  return { paths, keyIds };
}

interface Versions {
  targetsVersion: number;
  snapshotVersion: number;
  timestampVersion: number;
  targets: Record<string, TargetFile>;
}

/** Sign targets, then snapshot, then timestamp, each over the one before it (section 6.1). */
async function publishSigned(paths: ReleasePaths, settings: ReleaseSettings, now: Date, v: Versions): Promise<void> {
  const exp = (role: RoleName) => expiresAt(now, settings.expirySeconds[role]);
  const targets = new Metadata(
    new Targets({
      version: v.targetsVersion,
      specVersion: TUF_SPEC_VERSION,
      expires: exp('targets'),
      targets: v.targets,
    }),
  );
  signWith(targets, await readRoleKeys(paths, 'targets'));
  const snapshot = new Metadata(
    new Snapshot({
      version: v.snapshotVersion,
      specVersion: TUF_SPEC_VERSION,
      expires: exp('snapshot'),
      meta: { 'targets.json': new MetaFile({ version: v.targetsVersion }) },
    }),
  );
  signWith(snapshot, await readRoleKeys(paths, 'snapshot'));
  const timestamp = new Metadata(
    new Timestamp({
      version: v.timestampVersion,
      specVersion: TUF_SPEC_VERSION,
      expires: exp('timestamp'),
      snapshotMeta: new MetaFile({ version: v.snapshotVersion }),
    }),
  );
  signWith(timestamp, await readRoleKeys(paths, 'timestamp'));
  writeMetadata(paths.metadata, targets);
  writeMetadata(paths.metadata, snapshot);
  writeMetadata(paths.metadata, timestamp);
}

export interface PublishResult {
  targetsVersion: number;
  snapshotVersion: number;
  timestampVersion: number;
  published: string[];
}

/** New versions of targets (the published targets plus what was staged), snapshot and timestamp. */
export async function publishRepository(dir: string, now = new Date()): Promise<PublishResult> {
  const paths = releasePaths(dir);
  const settings = await readSettings(paths.settings);
  const current = await readCurrentMetadata(paths.metadata);
  const staged = await readStagedTargets(paths.staged);
  const v: Versions = {
    targetsVersion: current.targets.signed.version + 1,
    snapshotVersion: current.snapshot.signed.version + 1,
    timestampVersion: current.timestamp.signed.version + 1,
    targets: { ...current.targets.signed.targets, ...staged },
  };
  await publishSigned(paths, settings, now, v);
  await clearStagedTargets(paths.staged);
  const { targets: _targets, ...versions } = v;
  return { ...versions, published: Object.keys(staged) };
}

export interface RotateRootResult {
  version: number;
  oldKeyIds: string[];
  newKeyIds: string[];
}

/**
 * Root version N+1 with fresh root keys, signed by the old keys (so clients on version N accept
 * it) and the new ones (so it satisfies its own threshold). The old keys move to keys/retired.
 */
export async function rotateRoot(dir: string, now = new Date()): Promise<RotateRootResult> {
  const paths = releasePaths(dir);
  const settings = await readSettings(paths.settings);
  const { root } = await readCurrentMetadata(paths.metadata);
  const oldKeys = await readRoleKeys(paths, 'root');
  if (oldKeys.length < root.signed.roles.root!.threshold) {
    throw new EdgeguardError(
      'EG_NOT_FOUND',
      `fewer root keys than the root threshold in ${paths.offlineKeys}; a rotation needs them.`,
    );
  }
  const newKeys = await writeNewKeys(
    { ...paths, offlineKeys: join(paths.offlineKeys, 'next') },
    'root',
    settings.thresholds.root,
  );
  const publicKeysOf = (role: RoleName): Key[] => root.signed.roles[role]!.keyIDs.map((id) => root.signed.keys[id]!);
  const keys = {
    ...Object.fromEntries(ROLES.map((r) => [r, publicKeysOf(r)])),
    root: newKeys.map((k) => k.key),
  } as Record<RoleName, Key[]>;
  const thresholds = Object.fromEntries(ROLES.map((r) => [r, root.signed.roles[r]!.threshold])) as Record<
    RoleName,
    number
  >;
  const rotated = buildRoot(root.signed.version + 1, expiresAt(now, settings.expirySeconds.root), keys, {
    ...thresholds,
    root: settings.thresholds.root,
  });
  writeMetadata(paths.metadata, signWith(new Metadata(rotated), [...oldKeys, ...newKeys]));
  await retireOldRootKeys(paths, oldKeys, newKeys);
  return {
    version: rotated.version,
    oldKeyIds: oldKeys.map((k) => k.key.keyID),
    newKeyIds: newKeys.map((k) => k.key.keyID),
  };
}

async function retireOldRootKeys(paths: ReleasePaths, oldKeys: RoleKey[], newKeys: RoleKey[]): Promise<void> {
  await mkdir(paths.retiredKeys, { recursive: true, mode: 0o700 });
  const name = (k: RoleKey) => `root-${k.key.keyID.slice(0, 16)}.pem`;
  for (const k of oldKeys) await rename(join(paths.offlineKeys, name(k)), join(paths.retiredKeys, name(k)));
  for (const k of newKeys) await rename(join(paths.offlineKeys, 'next', name(k)), join(paths.offlineKeys, name(k)));
  await syncDirectory(paths.offlineKeys);
  await syncDirectory(paths.retiredKeys);
}

export interface ResignResult {
  /** New versions, for the roles that were re-signed. */
  snapshotVersion?: number;
  timestampVersion?: number;
}

/**
 * The online roles' duty (TUF specification 1.0, section 6.1: timestamp and snapshot keys are
 * online so they can be re-signed often): a timestamp within `renewWithin` of its expiry gets a
 * new version, and so does a snapshot within its own margin (the timestamp follows it). Targets
 * and root are never touched: they need the offline keys. Margins default to half of each role's
 * lifetime. Only the online keys (keys/online) are read.
 */
export async function resignOnlineMetadata(
  dir: string,
  now = new Date(),
  renewWithinSeconds: Partial<Record<'snapshot' | 'timestamp', number>> = {},
): Promise<ResignResult> {
  const paths = releasePaths(dir);
  const settings = await readSettings(paths.settings);
  const current = await readCurrentMetadata(paths.metadata);
  const due = (role: 'snapshot' | 'timestamp') => {
    const margin = renewWithinSeconds[role] ?? settings.expirySeconds[role] / 2;
    return current[role].signed.isExpired(new Date(now.getTime() + margin * 1000));
  };
  const result: ResignResult = {};
  let snapshotVersion = current.snapshot.signed.version;
  if (due('snapshot')) {
    snapshotVersion += 1;
    const snapshot = new Metadata(
      new Snapshot({
        version: snapshotVersion,
        specVersion: TUF_SPEC_VERSION,
        expires: expiresAt(now, settings.expirySeconds.snapshot),
        meta: current.snapshot.signed.meta,
      }),
    );
    writeMetadata(paths.metadata, signWith(snapshot, await readRoleKeys(paths, 'snapshot')));
    result.snapshotVersion = snapshotVersion;
  }
  if (result.snapshotVersion !== undefined || due('timestamp')) {
    const timestamp = new Metadata(
      new Timestamp({
        version: current.timestamp.signed.version + 1,
        specVersion: TUF_SPEC_VERSION,
        expires: expiresAt(now, settings.expirySeconds.timestamp),
        snapshotMeta: new MetaFile({ version: snapshotVersion }),
      }),
    );
    writeMetadata(paths.metadata, signWith(timestamp, await readRoleKeys(paths, 'timestamp')));
    result.timestampVersion = timestamp.signed.version;
  }
  return result;
}
