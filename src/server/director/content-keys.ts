/**
 * What the director knows of a release: its package target in the repository the control plane
 * serves (DATADIR/releases), and its content key, kept sealed to the director's X25519 key (HPKE
 * base mode, RFC 9180 section 6.1, as src/crypto/sealed-box.ts) and opened only in memory, per
 * issue, to be wrapped to one device (docs/formats.md, "Director content keys").
 */
import { basename, dirname, join } from 'node:path';
import type { TargetFile } from '@tufjs/models';
import {
  b64url,
  contentKeyFromBytes,
  fromB64url,
  openSealed,
  seal,
  wipe,
  X25519_KEY_BYTES,
  SEAL_TAG_BYTES,
  CONTENT_KEY_BYTES,
  type ContentKey,
} from '../../crypto/index.ts';
import { EdgeguardError } from '../../errors/index.ts';
import { inspectPackage } from '../../model/index.ts';
import { readCurrentMetadata, releasePaths } from '../../release/index.ts';
import type { DirectorKeys } from './keys.ts';
import type { DirectorRecords } from './records.ts';

/** HPKE `info`: names what the box is for, so no other sealed box opens as a content key. */
const SEAL_INFO = Buffer.from('edgeguard director content key v1');
const SEALED_BYTES = X25519_KEY_BYTES + CONTENT_KEY_BYTES + SEAL_TAG_BYTES;

function sealAad(release: string, version: number): Buffer {
  return Buffer.from(`${release}@${version}`, 'utf8');
}

export class ReleaseCatalog {
  constructor(
    /** The release workspace the control plane serves: DATADIR/releases. */
    private readonly workspace: string,
    private readonly keys: DirectorKeys['sealing'],
    private readonly records: DirectorRecords,
  ) {}

  /** The published package target of `release`@`version`. */
  async publishedTarget(release: string, version: number): Promise<TargetFile> {
    let targets: Record<string, TargetFile>;
    try {
      targets = (await readCurrentMetadata(releasePaths(this.workspace).metadata)).targets.signed.targets;
    } catch (e) {
      throw new EdgeguardError(
        'EG_NOT_FOUND',
        'the control plane has no release repository; copy the published repository to DATADIR/releases.',
        { cause: e },
      );
    }
    const found = Object.values(targets).find((t) => {
      const c = (t.custom as { edgeguard?: { name?: unknown; version?: unknown; signature?: unknown } }).edgeguard;
      return c?.name === release && c.version === version && c.signature !== undefined;
    });
    if (!found)
      throw new EdgeguardError(
        'EG_NOT_FOUND',
        `${release}@${version} is not in the published repository; release add and release publish it first.`,
      );
    return found;
  }

  /** Where the repository keeps a target's bytes (consistent snapshots: DIR/SHA256.NAME). */
  private targetFile(t: TargetFile): string {
    return join(releasePaths(this.workspace).targets, dirname(t.path), `${t.hashes.sha256}.${basename(t.path)}`);
  }

  async hasContentKey(release: string, version: number): Promise<boolean> {
    return (await this.records.contentKey(release, version)) !== undefined;
  }

  /** Seal and keep the content key of a release (base64url text), once it is the key its package names. */
  async storeContentKey(release: string, version: number, target: TargetFile, text: string): Promise<void> {
    const bytes = fromB64url(text);
    if (!bytes) throw new EdgeguardError('EG_BAD_REQUEST', 'contentKey is not base64url.');
    const key = contentKeyFromBytes(bytes);
    try {
      const header = (await inspectPackage(this.targetFile(target))).header;
      if (header.keyId !== key.kid)
        throw new EdgeguardError(
          'EG_BAD_REQUEST',
          `that content key (${key.kid}) is not the key ${release}@${version} is encrypted with (${header.keyId}).`,
        );
      const stored = await this.records.contentKey(release, version);
      if (stored && stored.kid !== key.kid)
        throw new EdgeguardError('EG_EXISTS', `${release}@${version} already has content key ${stored.kid}.`);
      if (stored) return;
      const sealed = seal(this.keys.publicKey, SEAL_INFO, sealAad(release, version), key.bytes);
      await this.records.putContentKey({
        release_name: release,
        version,
        kid: key.kid,
        sealed: b64url(Buffer.concat([sealed.enc, sealed.ciphertext])),
        stored_at: new Date().toISOString(),
      });
    } finally {
      wipe(key.bytes);
    }
  }

  /** The content key in memory; the caller wipes it. */
  async openContentKey(release: string, version: number): Promise<ContentKey> {
    const row = await this.records.contentKey(release, version);
    if (!row) throw new EdgeguardError('EG_NOT_FOUND', `no content key is stored for ${release}@${version}.`);
    const box = fromB64url(row.sealed);
    if (!box || box.length !== SEALED_BYTES)
      throw new EdgeguardError('EG_FORMAT', `the stored key of ${release}@${version} is damaged.`);
    const enc = box.subarray(0, X25519_KEY_BYTES);
    const bytes = openSealed(
      enc,
      this.keys.privateKey,
      SEAL_INFO,
      sealAad(release, version),
      box.subarray(X25519_KEY_BYTES),
    );
    const key = contentKeyFromBytes(bytes);
    if (key.kid !== row.kid) {
      wipe(key.bytes);
      throw new EdgeguardError('EG_FORMAT', `the stored key of ${release}@${version} does not match its kid.`);
    }
    return key;
  }
}
