/**
 * PCR authorizations shipped with a release (targets NAME/VERSION/pcr-authorizations/FILE, named in
 * the package target's custom metadata): the operator's signature over the PCR values the boot this
 * release brings will produce (`attest predict-pcrs`, `attest authorize-pcrs`). The device fetches
 * them through TUF (signed length and hash), checks each against its own PCR policy key, the key
 * its binding key's PolicyAuthorize names, and installs them into DIR/pcr-authorizations/ before
 * it boots the new components, so the binding key still unwraps after the reboot.
 *
 * A release whose authorization does not parse or is signed by another key is refused whole: its
 * boot would lock the device's keys.
 */
import { mkdir, readFile, rm } from 'node:fs/promises';
import { randomBytes, type KeyObject } from 'node:crypto';
import { basename, join } from 'node:path';
import type { Updater } from 'tuf-js';
import { syncDirectory } from '../crypto/index.ts';
import { EdgeguardError } from '../errors/index.ts';
import { PCR_AUTHORIZATIONS_DIR, readBindingPolicy, readDeviceFile } from '../keystore/index.ts';
import { parsePcrAuthorization, type ParsedPcrAuthorization } from '../tpm/index.ts';
import { replaceFileDurablySync } from './durable-file.ts';
import { classifyTufError, releaseRefused } from './refusal.ts';
import type { ReleaseCustom } from './release-target.ts';

export interface ShippedPcrAuthorization {
  /** The repository target path, e.g. mnist/4/pcr-authorizations/kernel-6.1.0-28.json. */
  target: string;
  /** The file's bytes as signed and hash-checked (small: at most PCR_AUTHORIZATION_MAX_BYTES). */
  text: string;
  authorization: ParsedPcrAuthorization;
}

/**
 * The PCR policy key of a device whose binding key takes operator-signed PCR values, or undefined
 * (software store, or a binding key bound to its provisioned PCR values only).
 */
export async function devicePcrPolicyKey(deviceDir: string): Promise<KeyObject | undefined> {
  const device = await readDeviceFile(deviceDir);
  if (device.provider !== 'tpm' || !device.tpm) return undefined;
  const policy = await readBindingPolicy(deviceDir, device);
  return policy.kind === 'authorized' ? policy.signerKey : undefined;
}

async function tuf<T>(step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (e) {
    throw classifyTufError(e);
  }
}

/** Download each authorization `release` names (hash-checked by tuf-js) and check it against `signerKey`. */
export async function fetchPcrAuthorizations(
  updater: Updater,
  release: ReleaseCustom,
  signerKey: KeyObject,
  downloadDir: string,
): Promise<ShippedPcrAuthorization[]> {
  const out: ShippedPcrAuthorization[] = [];
  for (const named of release.pcrAuthorizations ?? []) {
    const info = await tuf(() => updater.getTargetInfo(named.target));
    if (!info) throw releaseRefused('unknown-target', named.target);
    if (info.hashes.sha256 !== named.sha256)
      throw releaseRefused('malformed', `${named.target}: the release names other bytes than the targets metadata`);
    const tmp = join(downloadDir, `.pcr-authorization-${randomBytes(6).toString('hex')}`);
    let text: string;
    try {
      await mkdir(downloadDir, { recursive: true, mode: 0o700 });
      await tuf(() => updater.downloadTarget(info, tmp));
      text = await readFile(tmp, 'utf8');
    } finally {
      await rm(tmp, { force: true });
    }
    let authorization: ParsedPcrAuthorization;
    try {
      authorization = parsePcrAuthorization(text, { signerKey, source: named.target });
    } catch (e) {
      const code = e instanceof EdgeguardError ? e.code : 'EG_FORMAT';
      throw releaseRefused('pcr-authorization', `${code}: ${e instanceof Error ? e.message : String(e)}`, e);
    }
    out.push({ target: named.target, text, authorization });
  }
  return out;
}

/** One file name, whatever a release name holds: no separators, no leading dot. */
function safeName(name: string): string {
  return name.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\./, '_');
}

/**
 * Write the authorizations into DIR/pcr-authorizations/ as NAME-VERSION-FILE, each durably (temp
 * file, fsync, rename, directory fsync), so they are there when the new boot's PCRs are. Call it
 * before the device reboots into the release's components. Returns the files written.
 */
export async function installPcrAuthorizations(
  deviceDir: string,
  release: Pick<ReleaseCustom, 'name' | 'version'>,
  shipped: ShippedPcrAuthorization[],
): Promise<string[]> {
  if (shipped.length === 0) return [];
  const dir = join(deviceDir, PCR_AUTHORIZATIONS_DIR);
  const created = await mkdir(dir, { recursive: true, mode: 0o755 });
  // A directory that did not exist must itself survive a crash: fsync its parent.
  if (created !== undefined) await syncDirectory(deviceDir);
  const written: string[] = [];
  for (const s of shipped) {
    const file = join(dir, safeName(`${release.name}-${release.version}-${basename(s.target)}`));
    replaceFileDurablySync(file, s.text);
    written.push(file);
  }
  return written;
}
