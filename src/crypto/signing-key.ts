/**
 * Publisher signing keys: ECDSA P-256 (the OpenSSF Model Signing default) or Ed25519.
 * Private keys are PKCS#8 PEM files with mode 0600, public keys SPKI PEM. A key id is the
 * lowercase hex SHA-256 of the SPKI DER, the "public key hint" that DSSE signatures carry.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { EdgeguardError, FILE_CAPS, readBoundedText } from '../errors/index.ts';
import { assertPrivateFileMode } from './content-key.ts';
import { sha256 } from './encoding.ts';

export type SigningAlgorithm = 'ecdsa-p256' | 'ed25519';

export interface SigningKeyPair {
  algorithm: SigningAlgorithm;
  privateKey: KeyObject;
  publicKey: KeyObject;
  keyId: string;
}

export function generateSigningKey(algorithm: SigningAlgorithm = 'ecdsa-p256'): SigningKeyPair {
  const { privateKey, publicKey } =
    algorithm === 'ed25519' ? generateKeyPairSync('ed25519') : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { algorithm, privateKey, publicKey, keyId: publicKeyId(publicKey) };
}

export function publicKeyId(publicKey: KeyObject): string {
  return sha256(publicKey.export({ type: 'spki', format: 'der' })).toString('hex');
}

export function signingAlgorithmOf(key: KeyObject): SigningAlgorithm {
  if (key.asymmetricKeyType === 'ed25519') return 'ed25519';
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ecdsa-p256';
  throw new EdgeguardError(
    'EG_KEY_FORMAT',
    `unsupported signing key type ${key.asymmetricKeyType ?? 'unknown'}; use ECDSA P-256 or Ed25519.`,
  );
}

export function encodePrivateKeyPem(key: KeyObject): string {
  return key.export({ type: 'pkcs8', format: 'pem' }).toString();
}

export function encodePublicKeyPem(key: KeyObject): string {
  return key.export({ type: 'spki', format: 'pem' }).toString();
}

export async function readPrivateSigningKey(path: string): Promise<SigningKeyPair> {
  await assertPrivateFileMode(path);
  const pem = await readBoundedText(path, FILE_CAPS.key, 'read the signing key');
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(pem);
  } catch (e) {
    throw new EdgeguardError(
      'EG_KEY_FORMAT',
      `${path} is not a PEM private key; expected publisher.key from \`edgeguard key new --type signing\`.`,
      { cause: e },
    );
  }
  const publicKey = createPublicKey(privateKey);
  return { algorithm: signingAlgorithmOf(privateKey), privateKey, publicKey, keyId: publicKeyId(publicKey) };
}

export function parsePublicKeyPem(pem: string, what = 'the public key'): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch (e) {
    throw new EdgeguardError('EG_KEY_FORMAT', `${what} is not a PEM public key.`, { cause: e });
  }
  signingAlgorithmOf(key);
  return key;
}

export async function readPublicSigningKey(path: string): Promise<KeyObject> {
  const pem = await readBoundedText(path, FILE_CAPS.key, 'read the public key');
  return parsePublicKeyPem(pem, path);
}
