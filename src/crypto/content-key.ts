/**
 * The model content key: 256 random bits that encrypt one or more model packages.
 *
 * On disk it is a JSON Web Key (RFC 7517) of type "oct", written with mode 0600. Its key id is
 * the RFC 7638 JWK thumbprint: SHA-256 over the canonical `{"k":...,"kty":"oct"}`, base64url.
 * A thumbprint of a 256-bit random key reveals nothing about it, so the id can travel in package
 * headers and wrapped-key files.
 */
import { randomBytes } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { EdgeguardError, fsError, FILE_CAPS, readBoundedText } from '../errors/index.ts';
import { b64url, fromB64url, sha256 } from './encoding.ts';

export const CONTENT_KEY_BYTES = 32;

export interface ContentKey {
  /** RFC 7638 thumbprint, base64url (43 characters). */
  kid: string;
  /** The 32 secret bytes. Wipe with `wipe()` when done. */
  bytes: Buffer;
}

export function generateContentKey(): ContentKey {
  return contentKeyFromBytes(randomBytes(CONTENT_KEY_BYTES));
}

export function contentKeyFromBytes(bytes: Buffer): ContentKey {
  if (bytes.length !== CONTENT_KEY_BYTES) {
    throw new EdgeguardError('EG_KEY_FORMAT', `a content key must be ${CONTENT_KEY_BYTES} bytes, got ${bytes.length}.`);
  }
  return { kid: contentKeyId(bytes), bytes };
}

/** RFC 7638 section 3: members in lexicographic order, no whitespace. */
export function contentKeyId(bytes: Uint8Array): string {
  return b64url(sha256(Buffer.from(`{"k":"${b64url(bytes)}","kty":"oct"}`)));
}

/** The raw 32-byte form of a key id, as stored in package headers. */
export function keyIdBytes(kid: string): Buffer {
  const raw = fromB64url(kid);
  if (!raw || raw.length !== 32)
    throw new EdgeguardError('EG_KEY_FORMAT', `"${kid}" is not a content key id (43 base64url characters).`);
  return raw;
}

export function encodeContentKeyFile(key: ContentKey): string {
  const jwk = { kty: 'oct', kid: key.kid, use: 'enc', k: b64url(key.bytes) };
  return JSON.stringify(jwk, null, 2) + '\n';
}

export function parseContentKeyFile(text: string): ContentKey {
  let jwk: unknown;
  try {
    jwk = JSON.parse(text);
  } catch {
    throw new EdgeguardError(
      'EG_KEY_FORMAT',
      'the content key file is not JSON; expected a JWK made by `edgeguard key new --type content`.',
    );
  }
  if (typeof jwk !== 'object' || jwk === null)
    throw new EdgeguardError('EG_KEY_FORMAT', 'the content key file is not a JWK object.');
  const { kty, k, kid } = jwk as Record<string, unknown>;
  if (kty !== 'oct' || typeof k !== 'string') {
    throw new EdgeguardError(
      'EG_KEY_FORMAT',
      'the content key file is not a symmetric JWK (kty "oct" with "k"); is it a signing key?',
    );
  }
  const bytes = fromB64url(k);
  if (!bytes || bytes.length !== CONTENT_KEY_BYTES) {
    throw new EdgeguardError('EG_KEY_FORMAT', `the content key must be ${CONTENT_KEY_BYTES} bytes of base64url.`);
  }
  const key = contentKeyFromBytes(bytes);
  if (kid !== undefined && kid !== key.kid) {
    throw new EdgeguardError(
      'EG_KEY_FORMAT',
      'the content key file\'s "kid" does not match its key (RFC 7638 thumbprint); the file was edited.',
    );
  }
  return key;
}

/** Read a content key file, refusing one that others can read (as ssh does for private keys). */
export async function readContentKeyFile(path: string): Promise<ContentKey> {
  await assertPrivateFileMode(path);
  const text = await readBoundedText(path, FILE_CAPS.key, 'read the key file');
  return parseContentKeyFile(text);
}

export async function assertPrivateFileMode(path: string): Promise<void> {
  let mode: number;
  try {
    mode = (await stat(path)).mode;
  } catch (e) {
    throw fsError(e, path, 'read the key file');
  }
  if (process.platform !== 'win32' && (mode & 0o077) !== 0) {
    throw new EdgeguardError(
      'EG_KEY_PERMISSIONS',
      `${path} is readable by other users (mode ${(mode & 0o777).toString(8)}); run \`chmod 600 ${path}\`.`,
    );
  }
}
