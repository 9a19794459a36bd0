/**
 * The device side of a release: tuf-js's Updater (TUF specification 1.0, section 5 "Detailed
 * client workflow") refreshes root, timestamp, snapshot and targets, downloads a release's files
 * within their signed lengths and hashes, and then edgeguard's own checks run: the package's OMS
 * signature by a trusted publisher key, the header and version the targets metadata promised,
 * and the device's minimum version. Every refusal is EG_RELEASE_REFUSED with a reason.
 */
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { KeyObject } from 'node:crypto';
import { Updater, type BaseFetcher, type TargetFile } from 'tuf-js';
import { z } from 'zod';
import { verifyPackage, type VerifyResult } from '../model/index.ts';
import { replaceFileDurablySync } from './durable-file.ts';
import { classifyTufError, releaseRefused } from './refusal.ts';
import { MAX_PCR_AUTHORIZATIONS, RELEASE_KINDS, type ReleaseCustom, type ReleaseKind } from './release-target.ts';
import { fetchPcrAuthorizations, type ShippedPcrAuthorization } from './shipped-authorizations.ts';

/**
 * tuf-js 5.0.1 persists trusted metadata with a plain writeFileSync (Updater#persistMetadata): a
 * crash mid-write leaves a truncated root.json and a device that trusts nothing. The method is
 * private, so it is replaced on the instance with a durable write (temp file, fsync, rename,
 * directory fsync); test/release/client.test.ts checks that tuf-js still calls it.
 */
export class DurableUpdater extends Updater {
  constructor(options: ConstructorParameters<typeof Updater>[0]) {
    super(options);
    const dir = options.metadataDir;
    Object.defineProperty(this, 'persistMetadata', {
      value: (name: string, bytes: Buffer) =>
        replaceFileDurablySync(join(dir, `${encodeURIComponent(name)}.json`), bytes),
    });
  }
}

/** A device's first trust: the repository's root.json, written durably where the Updater reads it. */
export async function provisionTrustedRoot(metadataDir: string, rootJson: Uint8Array): Promise<void> {
  await mkdir(metadataDir, { recursive: true, mode: 0o700 });
  replaceFileDurablySync(join(metadataDir, 'root.json'), rootJson);
}

const customSchema = z.object({
  kind: z.enum(RELEASE_KINDS),
  name: z.string().min(1).max(128),
  version: z.number().int().min(0),
  minVersion: z.number().int().min(0),
  headerSha256: z.string().regex(/^[0-9a-f]{64}$/),
  signature: z.object({ target: z.string().min(1), sha256: z.string().regex(/^[0-9a-f]{64}$/) }),
  smokeTest: z.object({ target: z.string().min(1), expectedLabel: z.string() }).optional(),
  pcrAuthorizations: z
    .array(z.object({ target: z.string().min(1), sha256: z.string().regex(/^[0-9a-f]{64}$/) }))
    .max(MAX_PCR_AUTHORIZATIONS)
    .optional(),
});

export interface FetchReleaseOptions {
  metadataDir: string;
  metadataBaseUrl: string;
  targetBaseUrl: string;
  /** Where verified files land; nothing unverified is left here. */
  downloadDir: string;
  /** The package's target path, e.g. mnist/3/mnist.egm. */
  target: string;
  publisherKeys: KeyObject[];
  /** The lowest version this device may run (its anti-rollback floor). */
  minimumVersion: number;
  /** The device's floor for the release's kind (floor.ts), checked with minimumVersion before any download. */
  floorOf?: ((kind: ReleaseKind) => Promise<number>) | undefined;
  /**
   * The device's PCR policy key (`devicePcrPolicyKey`): the release's PCR authorizations are
   * fetched and must be signed by it. Without it (no authorized binding policy) none are fetched.
   */
  pcrPolicyKey?: KeyObject;
  /** How metadata and targets are fetched (default: tuf-js's own); RepositoryFetcher keeps to an egress allowlist. */
  fetcher?: BaseFetcher | undefined;
}

export interface FetchedRelease {
  packagePath: string;
  signaturePath: string;
  /** The release's smoke-test input, downloaded and hash-checked like the package. */
  smokeInputPath?: string | undefined;
  release: ReleaseCustom;
  verified: VerifyResult;
  /** Verified, in memory; `installPcrAuthorizations` puts them on the device before its reboot. */
  pcrAuthorizations: ShippedPcrAuthorization[];
}

export async function tuf<T>(step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (e) {
    throw classifyTufError(e);
  }
}

export async function targetInfo(updater: Updater, path: string): Promise<TargetFile> {
  const info = await tuf(() => updater.getTargetInfo(path));
  if (!info) throw releaseRefused('unknown-target', path);
  return info;
}

export function releaseOf(info: TargetFile): ReleaseCustom {
  const parsed = customSchema.safeParse((info.custom as { edgeguard?: unknown }).edgeguard);
  if (!parsed.success) throw releaseRefused('malformed', `${info.path} has no valid edgeguard release metadata`);
  return parsed.data;
}

export async function fetchRelease(o: FetchReleaseOptions): Promise<FetchedRelease> {
  const updater = new DurableUpdater({
    metadataDir: o.metadataDir,
    metadataBaseUrl: o.metadataBaseUrl,
    targetBaseUrl: o.targetBaseUrl,
    targetDir: o.downloadDir,
    ...(o.fetcher ? { fetcher: o.fetcher } : {}),
  });
  await tuf(() => updater.refresh());
  return downloadVerified(updater, await targetInfo(updater, o.target), o);
}

/** What downloading a release after a refresh needs: where, whose signatures, which floor. */
export type DownloadOptions = Pick<
  FetchReleaseOptions,
  'downloadDir' | 'publisherKeys' | 'minimumVersion' | 'floorOf' | 'pcrPolicyKey'
>;

/**
 * The release `info` names, downloaded from a refreshed Updater within its signed length and
 * hashes, then checked against the publisher keys and the device's minimum version.
 */
export async function downloadVerified(
  updater: Updater,
  info: TargetFile,
  o: DownloadOptions,
): Promise<FetchedRelease> {
  const release = releaseOf(info);
  const minimum = Math.max(o.minimumVersion, (await o.floorOf?.(release.kind)) ?? 0);
  // Refused before any download: the signed metadata already says it is too old.
  if (release.version < minimum) {
    throw releaseRefused('below-minimum', `${release.name} ${release.version} < minimum ${minimum}`);
  }
  const sigInfo = await targetInfo(updater, release.signature.target);
  await mkdir(o.downloadDir, { recursive: true, mode: 0o700 });
  const packagePath = join(o.downloadDir, `${release.name}-${release.version}.egm`);
  const signaturePath = `${packagePath}.sig.json`;
  const smokeInputPath = release.smokeTest ? `${packagePath}.smoke` : undefined;
  try {
    await tuf(() => updater.downloadTarget(info, packagePath));
    await tuf(() => updater.downloadTarget(sigInfo, signaturePath));
    if (release.smokeTest && smokeInputPath) {
      const smokeInfo = await targetInfo(updater, release.smokeTest.target);
      await tuf(() => updater.downloadTarget(smokeInfo, smokeInputPath));
    }
    const verified = await verifyPublished(packagePath, signaturePath, release, o);
    const pcrAuthorizations = o.pcrPolicyKey
      ? await fetchPcrAuthorizations(updater, release, o.pcrPolicyKey, o.downloadDir)
      : [];
    return { packagePath, signaturePath, smokeInputPath, release, verified, pcrAuthorizations };
  } catch (e) {
    for (const p of [packagePath, signaturePath, smokeInputPath]) if (p) await rm(p, { force: true });
    throw e;
  }
}

/** After TUF: the publisher's signature, and that it signed what the targets metadata described. */
async function verifyPublished(
  packagePath: string,
  signaturePath: string,
  release: ReleaseCustom,
  o: DownloadOptions,
): Promise<VerifyResult> {
  let verified: VerifyResult;
  try {
    verified = await verifyPackage(packagePath, { publicKeys: o.publisherKeys, signaturePath });
  } catch (e) {
    throw releaseRefused('package-signature', e instanceof Error ? e.message : String(e), e);
  }
  const meta = verified.header.metadata;
  if (
    verified.headerSha256 !== release.headerSha256 ||
    meta.name !== release.name ||
    meta.version !== release.version
  ) {
    throw releaseRefused('malformed', `the signed package is not the release the targets metadata describes`);
  }
  if (meta.version < o.minimumVersion) {
    throw releaseRefused('below-minimum', `${meta.name} ${meta.version} < minimum ${o.minimumVersion}`);
  }
  return verified;
}
