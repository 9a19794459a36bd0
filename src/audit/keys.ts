/**
 * The log's checkpoint signing key. The server keeps it as a PKCS#8 PEM file with mode 0600 in its
 * data directory (the same convention as publisher keys) and publishes the verifier key string
 * (`name+keyid+base64`, C2SP signed-note) as `audit-log.pub`, which clients pin with --log-key.
 */
import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { EdgeguardError, FILE_CAPS, fsError, readBoundedText } from '../errors/index.ts';
import { assertPrivateFileMode, writePrivateFile } from '../crypto/index.ts';
import { formatVerifierKey, noteSigner, parseVerifierKey, type NoteSigner, type NoteVerifier } from './note.ts';

/** The checkpoint origin (and key name) of a control plane's log unless configured otherwise. */
export const DEFAULT_LOG_ORIGIN = 'edgeguard/audit';

/**
 * C2SP tlog-checkpoint: the origin identifies one log and should be a schema-less URL. Derived from
 * the control plane's URL, two fleets get two origins (and witnesses keep their state apart).
 */
export function logOriginFor(serverUrl: string): string {
  return `${new URL(serverUrl).host}/audit`;
}
export const LOG_KEY_FILE = 'audit-log.key';
export const LOG_PUB_FILE = 'audit-log.pub';

export function generateLogSigner(origin: string): NoteSigner {
  return noteSigner(origin, generateKeyPairSync('ed25519').privateKey);
}

/** Load the log key from `dir`, creating it (and the .pub beside it) on first use. */
export async function loadOrCreateLogSigner(dir: string, origin: string): Promise<NoteSigner> {
  const keyPath = join(dir, LOG_KEY_FILE);
  await mkdir(dir, { recursive: true, mode: 0o700 }).catch((e: unknown) => {
    throw fsError(e, dir, 'create the data directory');
  });
  let pem: string | undefined;
  try {
    await assertPrivateFileMode(keyPath);
    pem = await readBoundedText(keyPath, FILE_CAPS.key, 'read the log key');
  } catch (e) {
    if (!(e instanceof EdgeguardError && e.code === 'EG_NOT_FOUND')) throw e;
  }
  let signer: NoteSigner;
  if (pem === undefined) {
    signer = generateLogSigner(origin);
    await writePrivateFile(keyPath, signer.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
  } else {
    try {
      signer = noteSigner(origin, createPrivateKey(pem));
    } catch (e) {
      throw new EdgeguardError('EG_KEY_FORMAT', `${keyPath} is not an Ed25519 PKCS#8 private key.`, { cause: e });
    }
  }
  const pubPath = join(dir, LOG_PUB_FILE);
  try {
    await writeFile(pubPath, formatVerifierKey(signer) + '\n', { mode: 0o644 });
  } catch (e) {
    throw fsError(e, pubPath, 'write the log verifier key');
  }
  return signer;
}

/** Read a verifier key string from a file (as written to audit-log.pub). */
export async function readLogVerifierKey(path: string): Promise<NoteVerifier> {
  return parseVerifierKey(await readBoundedText(path, FILE_CAPS.key, 'read the log verifier key'));
}
