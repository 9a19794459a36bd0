/**
 * TUF role keys: Ed25519, private halves as PKCS#8 PEM files (mode 0600), public halves in root
 * metadata as the hex form of TUF's "ed25519" key type. The key id is SHA-256 over the canonical
 * JSON of the public key (TUF specification 1.0, section 4.2 "File formats: general principles").
 */
import { createHash, sign, type KeyObject } from 'node:crypto';
import { Key, Signature } from '@tufjs/models';
import { encodePrivateKeyPem, generateSigningKey, readPrivateSigningKey, writePrivateFile } from '../crypto/index.ts';
import { EdgeguardError } from '../errors/index.ts';

export interface RoleKey {
  key: Key;
  privateKey: KeyObject;
}

/** The last 32 bytes of an Ed25519 SubjectPublicKeyInfo are the raw public key (RFC 8410). */
function rawEd25519(publicKey: KeyObject): string {
  return publicKey.export({ format: 'der', type: 'spki' }).subarray(-32).toString('hex');
}

export function tufKeyOf(publicKey: KeyObject): Key {
  const publicHex = rawEd25519(publicKey);
  // Keys sorted, no whitespace, hex only: this string is its own canonical JSON form.
  const canonical = `{"keytype":"ed25519","keyval":{"public":"${publicHex}"},"scheme":"ed25519"}`;
  const keyID = createHash('sha256').update(canonical).digest('hex');
  return new Key({ keyID, keyType: 'ed25519', scheme: 'ed25519', keyVal: { public: publicHex } });
}

export function generateRoleKey(): RoleKey {
  const { privateKey, publicKey } = generateSigningKey('ed25519');
  return { key: tufKeyOf(publicKey), privateKey };
}

/** A signer for `Metadata.sign`: Ed25519 over the canonical bytes tuf-js hands it. */
export function signerOf(k: RoleKey): (data: Buffer) => Signature {
  return (data) => new Signature({ keyID: k.key.keyID, sig: sign(null, data, k.privateKey).toString('hex') });
}

export async function writeRoleKey(path: string, k: RoleKey): Promise<void> {
  await writePrivateFile(path, encodePrivateKeyPem(k.privateKey));
}

export async function readRoleKey(path: string): Promise<RoleKey> {
  const pair = await readPrivateSigningKey(path);
  if (pair.algorithm !== 'ed25519') {
    throw new EdgeguardError('EG_KEY_FORMAT', `${path} is not an Ed25519 key; release keys are Ed25519.`);
  }
  return { key: tufKeyOf(pair.publicKey), privateKey: pair.privateKey };
}
