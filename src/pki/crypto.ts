/**
 * The one place where @peculiar/x509 meets Node's WebCrypto, and where keys change form
 * (KeyObject <-> CryptoKey <-> SPKI). Every fleet key is ECDSA P-256 with SHA-256 (FIPS 186-4).
 */
// @peculiar/x509 resolves its algorithm registry through tsyringe, which needs the Reflect
// metadata polyfill loaded first (ES modules evaluate imports in order).
import 'reflect-metadata';
import { webcrypto, createPublicKey, type KeyObject } from 'node:crypto';

export type CryptoKey = webcrypto.CryptoKey;
export type CryptoKeyPair = webcrypto.CryptoKeyPair;
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export const subtle = webcrypto.subtle;
export const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256' } as const;
export const ECDSA_SHA256 = { name: 'ECDSA', hash: 'SHA-256' } as const;

export async function generateP256(extractable = true): Promise<CryptoKeyPair> {
  return (await subtle.generateKey(EC_P256, extractable, ['sign', 'verify'])) as CryptoKeyPair;
}

export async function signingKeyFromKeyObject(key: KeyObject): Promise<CryptoKey> {
  const der = key.export({ type: 'pkcs8', format: 'der' });
  try {
    return (await subtle.importKey('pkcs8', der, EC_P256, false, ['sign'])) as CryptoKey;
  } finally {
    der.fill(0);
  }
}

export async function privateKeyToPkcs8Pem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await subtle.exportKey('pkcs8', key));
  return x509.PemConverter.encode(der, 'PRIVATE KEY') + '\n';
}

export async function spkiOf(key: CryptoKey): Promise<Buffer> {
  return Buffer.from(await subtle.exportKey('spki', key));
}

/** Whether an SPKI (DER) is an EC P-256 key; other curves and RSA are refused for fleet certs. */
export function isP256Spki(spki: Uint8Array): boolean {
  try {
    const k = createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' });
    return k.asymmetricKeyType === 'ec' && k.asymmetricKeyDetails?.namedCurve === 'prime256v1';
  } catch {
    return false;
  }
}

export { x509 };
