/**
 * One release as TUF targets: the package, its signature file and optionally a smoke-test input,
 * each copied into repository/targets under its SHA-256-prefixed name (consistent snapshots,
 * TUF specification 1.0, section 5.7.3), with edgeguard's facts in the package target's `custom`
 * member (docs/formats.md, "Release repository").
 */
import { createHash, type KeyObject } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { TargetFile } from '@tufjs/models';
import { syncDirectory } from '../crypto/index.ts';
import { EdgeguardError, fsError, readBoundedText } from '../errors/index.ts';
import { inspectPackage, signaturePathFor, verifyPackage } from '../model/index.ts';
import { PCR_AUTHORIZATION_MAX_BYTES, parsePcrAuthorization } from '../tpm/index.ts';
import { releasePaths } from './layout.ts';
import { stageTargets } from './staging.ts';

export const RELEASE_KINDS = ['model', 'agent', 'firmware'] as const;
export type ReleaseKind = (typeof RELEASE_KINDS)[number];
/** The folder of a release's PCR authorizations among its targets. */
export const PCR_AUTHORIZATION_TARGETS = 'pcr-authorizations';
export const MAX_PCR_AUTHORIZATIONS = 16;

/** The `custom.edgeguard` member of a package target. */
export interface ReleaseCustom {
  kind: ReleaseKind;
  name: string;
  version: number;
  minVersion: number;
  headerSha256: string;
  signature: { target: string; sha256: string };
  smokeTest?: { target: string; expectedLabel: string };
  /** Operator-signed PCR authorizations of the boot this release brings (shipped-authorizations.ts). */
  pcrAuthorizations?: Array<{ target: string; sha256: string }>;
}

export interface AddReleaseOptions {
  dir: string;
  packagePath: string;
  version: number;
  minVersion?: number;
  kind?: ReleaseKind;
  signaturePath?: string;
  smokeTest?: { inputPath: string; expectedLabel: string };
  /** When given, the package must verify under one of them: devices would refuse it otherwise. */
  publisherKeys?: KeyObject[];
  /** `attest authorize-pcrs` files shipped as targets NAME/VERSION/pcr-authorizations/FILE. */
  pcrAuthorizationPaths?: string[];
}

async function sha256File(path: string): Promise<{ sha256: string; length: number }> {
  const hash = createHash('sha256');
  let length = 0;
  try {
    for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) {
      hash.update(chunk);
      length += chunk.length;
    }
  } catch (e) {
    throw fsError(e, path, 'read');
  }
  return { sha256: hash.digest('hex'), length };
}

/** Copy `source` to targets/DIR/SHA256.NAME durably and return its TUF entry. */
async function copyTarget(
  targetsDir: string,
  targetPath: string,
  source: string,
  custom?: Record<string, unknown>,
): Promise<TargetFile> {
  const { sha256, length } = await sha256File(source);
  const dest = join(targetsDir, dirname(targetPath), `${sha256}.${basename(targetPath)}`);
  await mkdir(dirname(dest), { recursive: true });
  const tmp = `${dest}.tmp-${process.pid}`;
  try {
    await copyFile(source, tmp);
    const fh = await open(tmp, 'r+');
    await fh.sync().finally(() => fh.close());
    await rename(tmp, dest);
    await syncDirectory(dirname(dest));
  } catch (e) {
    await rm(tmp, { force: true });
    throw fsError(e, dest, 'write the target');
  }
  if ((await stat(dest)).size !== length) {
    throw new EdgeguardError('EG_IO', `${source} changed while it was being added; add it again.`);
  }
  return new TargetFile({
    path: targetPath,
    length,
    hashes: { sha256 },
    ...(custom ? { unrecognizedFields: { custom: { edgeguard: custom } } as never } : {}),
  });
}

function checkVersions(o: AddReleaseOptions, packageVersion: number): number {
  if (o.version !== packageVersion) {
    throw new EdgeguardError(
      'EG_USAGE',
      `--version ${o.version} does not match the version signed in the package (${packageVersion}); repack or fix --version.`,
    );
  }
  const minVersion = o.minVersion ?? 0;
  if (minVersion > o.version) {
    throw new EdgeguardError(
      'EG_USAGE',
      `--min-version ${minVersion} is above the release's own version ${o.version}.`,
    );
  }
  return minVersion;
}

/**
 * Each authorization must parse (a device would refuse the release otherwise); which key signed it
 * is the device's check, against its own PCR policy key.
 */
async function copyPcrAuthorizations(targetsDir: string, prefix: string, files: string[]): Promise<TargetFile[]> {
  if (files.length > MAX_PCR_AUTHORIZATIONS)
    throw new EdgeguardError('EG_USAGE', `a release ships at most ${MAX_PCR_AUTHORIZATIONS} PCR authorizations.`);
  const names = files.map((f) => basename(f));
  if (new Set(names).size !== names.length)
    throw new EdgeguardError('EG_USAGE', 'two --pcr-authorization files have the same name; rename one.');
  for (const file of files)
    parsePcrAuthorization(await readBoundedText(file, PCR_AUTHORIZATION_MAX_BYTES, 'read'), { source: file });
  const out: TargetFile[] = [];
  for (const file of files)
    out.push(await copyTarget(targetsDir, `${prefix}/${PCR_AUTHORIZATION_TARGETS}/${basename(file)}`, file));
  return out;
}

/** Stage a release; `publishRepository` makes it visible. Returns the package target's entry. */
export async function addRelease(o: AddReleaseOptions): Promise<TargetFile> {
  const paths = releasePaths(o.dir);
  const signaturePath = o.signaturePath ?? signaturePathFor(o.packagePath);
  const inspected = await inspectPackage(o.packagePath, signaturePath);
  if ('error' in (inspected.signature ?? { error: 'missing' })) {
    throw new EdgeguardError(
      'EG_SIGNATURE_INVALID',
      `${signaturePath} is not a package signature; sign the package first.`,
    );
  }
  if (o.publisherKeys) await verifyPackage(o.packagePath, { publicKeys: o.publisherKeys, signaturePath });
  const meta = inspected.header.metadata;
  const minVersion = checkVersions(o, meta.version);
  const prefix = `${meta.name}/${o.version}`;
  const authorizations = await copyPcrAuthorizations(paths.targets, prefix, o.pcrAuthorizationPaths ?? []);
  const sigTarget = await copyTarget(paths.targets, `${prefix}/${basename(o.packagePath)}.sig.json`, signaturePath);
  const smoke = o.smokeTest
    ? await copyTarget(paths.targets, `${prefix}/smoke-${basename(o.smokeTest.inputPath)}`, o.smokeTest.inputPath)
    : undefined;
  const custom: ReleaseCustom = {
    kind: o.kind ?? 'model',
    name: meta.name,
    version: o.version,
    minVersion,
    headerSha256: inspected.headerSha256,
    signature: { target: sigTarget.path, sha256: sigTarget.hashes.sha256! },
    ...(smoke && o.smokeTest ? { smokeTest: { target: smoke.path, expectedLabel: o.smokeTest.expectedLabel } } : {}),
    ...(authorizations.length
      ? { pcrAuthorizations: authorizations.map((t) => ({ target: t.path, sha256: t.hashes.sha256! })) }
      : {}),
  };
  const pkgTarget = await copyTarget(paths.targets, `${prefix}/${basename(o.packagePath)}`, o.packagePath, {
    ...custom,
  });
  await stageTargets(paths.staged, [pkgTarget, sigTarget, ...(smoke ? [smoke] : []), ...authorizations]);
  return pkgTarget;
}
