/**
 * Director metadata (Uptane Standard 1.2, section 5.2 "Director repository"): TUF targets metadata
 * (TUF specification 1.0, section 4.5) made for one device by the control plane and signed by its
 * online director key. It names exactly the targets that device must run; each carries the
 * repository's own `custom.edgeguard` facts and, under `custom.director`, the device id, the
 * assignment, and the release's content key wrapped to the device's enrolled TPM binding key.
 * The device accepts a target only when the repository's signed targets name the same path with
 * the same length and hashes (checkAgreement). Layout: docs/formats.md, "Director metadata".
 */
import { Metadata, MetadataKind, Targets, TargetFile, type Key } from '@tufjs/models';
import { z } from 'zod';
import { parseWrappedKeyFile, type WrappedKeyFile } from '../keystore/index.ts';
import { signerOf, type RoleKey } from './keys.ts';
import { releaseRefused } from './refusal.ts';
import { TUF_SPEC_VERSION } from './repository.ts';

/** A director document is a few targets: anything larger is refused before it is parsed. */
export const MAX_DIRECTOR_METADATA_BYTES = 256 * 1024;

export interface DirectorAssignment {
  /** The repository's target entry for the release's package (path, length, hashes, custom.edgeguard). */
  repositoryTarget: TargetFile;
  assignmentId: string;
  wrappedKey: WrappedKeyFile;
}

export interface DirectorMetadataInput {
  deviceId: string;
  version: number;
  expires: string;
  assignments: DirectorAssignment[];
}

export const directorCustomSchema = z.strictObject({
  deviceId: z.string().min(1).max(200),
  assignment: z.string().min(1).max(64),
  wrappedKey: z.record(z.string(), z.unknown()),
});

export type DirectorCustom = z.infer<typeof directorCustomSchema>;

/** Unsigned director metadata for one device: one target per assigned release. */
export function buildDirectorTargets(input: DirectorMetadataInput): Metadata<Targets> {
  const targets: Record<string, TargetFile> = {};
  for (const a of input.assignments) {
    const t = a.repositoryTarget;
    const director: DirectorCustom = {
      deviceId: input.deviceId,
      assignment: a.assignmentId,
      wrappedKey: { ...a.wrappedKey },
    };
    targets[t.path] = new TargetFile({
      path: t.path,
      length: t.length,
      hashes: { ...t.hashes },
      unrecognizedFields: { custom: { ...t.custom, director } } as never,
    });
  }
  return new Metadata(
    new Targets({ version: input.version, specVersion: TUF_SPEC_VERSION, expires: input.expires, targets }),
  );
}

export function signDirectorTargets(md: Metadata<Targets>, keys: RoleKey[]): Metadata<Targets> {
  for (const k of keys) md.sign(signerOf(k));
  return md;
}

export interface VerifiedDirectorTarget {
  target: TargetFile;
  director: DirectorCustom;
  /** The wrapped key file's text, as `KeyStore.unwrapContentKey` reads it. */
  wrappedKeyText: string;
}

export interface VerifiedDirectorMetadata {
  version: number;
  expires: string;
  targets: VerifiedDirectorTarget[];
}

export interface DirectorTrust {
  /** The director's public keys (TUF ed25519 keys); `threshold` of them must have signed. */
  keys: Key[];
  threshold?: number;
  deviceId: string;
  /** The highest director metadata version this device accepted before (rollback). */
  lastVersion: number;
  now?: Date;
}

function parseJson(bytes: Uint8Array): Parameters<typeof Metadata.fromJSON>[1] {
  if (bytes.length > MAX_DIRECTOR_METADATA_BYTES)
    throw releaseRefused('too-large', `director metadata of ${bytes.length} bytes`);
  try {
    return JSON.parse(Buffer.from(bytes).toString('utf8')) as Parameters<typeof Metadata.fromJSON>[1];
  } catch (e) {
    throw releaseRefused('malformed', 'the director metadata is not JSON', e);
  }
}

function countValidSignatures(md: Metadata<Targets>, keys: Key[]): number {
  let valid = 0;
  for (const key of keys) {
    if (!md.signatures[key.keyID]) continue;
    try {
      key.verifySignature(md);
      valid += 1;
    } catch {
      // a signature that does not verify counts for nothing
    }
  }
  return valid;
}

/**
 * The checks of Uptane 1.2, section 5.4.4.2 ("Full verification", the director steps) as they
 * apply to one device: signatures by the director keys, not expired, a version not below the one
 * last accepted, and every target made for this device with a wrapped key that parses.
 */
export function verifyDirectorMetadata(bytes: Uint8Array, trust: DirectorTrust): VerifiedDirectorMetadata {
  const json = parseJson(bytes);
  let md: Metadata<Targets>;
  try {
    md = Metadata.fromJSON(MetadataKind.Targets, json);
  } catch (e) {
    throw releaseRefused('malformed', 'the director metadata is not TUF targets metadata', e);
  }
  const threshold = trust.threshold ?? 1;
  const valid = countValidSignatures(md, trust.keys);
  if (valid < threshold)
    throw releaseRefused('signature', `director metadata was signed by ${valid}/${threshold} director keys`);
  if (md.signed.version < trust.lastVersion)
    throw releaseRefused('rollback', `director metadata version ${md.signed.version} < ${trust.lastVersion}`);
  if (md.signed.isExpired(trust.now ?? new Date()))
    throw releaseRefused('expired', `director metadata expired at ${md.signed.expires}`);
  const targets = Object.values(md.signed.targets).map((target) => {
    const parsed = directorCustomSchema.safeParse((target.custom as { director?: unknown }).director);
    if (!parsed.success) throw releaseRefused('malformed', `${target.path} has no valid director member`);
    if (parsed.data.deviceId !== trust.deviceId)
      throw releaseRefused('not-assigned', `director metadata for ${parsed.data.deviceId}, not ${trust.deviceId}`);
    const wrappedKeyText = JSON.stringify(parsed.data.wrappedKey);
    try {
      parseWrappedKeyFile(wrappedKeyText);
    } catch (e) {
      throw releaseRefused('malformed', `${target.path} carries no valid wrapped key`, e);
    }
    return { target, director: parsed.data, wrappedKeyText };
  });
  return { version: md.signed.version, expires: md.signed.expires, targets };
}

/**
 * The director and the repository must agree (Uptane 1.2, section 5.4.4.2, step 9): the
 * repository's signed targets name the director's target with the same length and every hash.
 */
export function checkAgreement(director: TargetFile, repository: TargetFile | undefined): void {
  if (!repository) throw releaseRefused('unknown-target', `the repository does not list ${director.path}`);
  const hashes = Object.entries(director.hashes);
  const same =
    director.length === repository.length &&
    hashes.length > 0 &&
    hashes.every(([alg, h]) => repository.hashes[alg] === h) &&
    Object.keys(repository.hashes).every((alg) => alg in director.hashes);
  if (!same)
    throw releaseRefused('director-mismatch', `${director.path}: the director and the repository name other bytes`);
}
