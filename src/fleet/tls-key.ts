/**
 * The device's TLS client key at rest (DIR/fleet/tls-key.json): an ECDSA P-256 key (Node's TLS
 * needs the private key in memory; a TPM-resident key would need an OpenSSL provider), encrypted
 * with AES-256-GCM under a fresh 256-bit key that is wrapped to the device's binding key
 * (RSA-OAEP-256, the wrapped-key file of the key store). With the TPM provider the binding key
 * never leaves the TPM and answers only under its PCR policy, so a copied device directory, or
 * the same disk booted into another state, cannot recover the TLS key. Layout: docs/formats.md.
 *
 *   { "type": "edgeguard-fleet-tls-key", "version": 1,
 *     "wrappedKey": <wrapped key file text>, "iv": b64url(12), "ciphertext": b64url(PKCS#8 DER || tag16) }
 *   AAD = "edgeguard-fleet-tls-key/1"
 */
import { createCipheriv, createDecipheriv, createPrivateKey, randomBytes, webcrypto } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { z } from 'zod';
import { generateContentKey, wipe, b64url } from '../crypto/index.ts';
import { EdgeguardError, fsError, FILE_CAPS, readBoundedText } from '../errors/index.ts';
import { encodeWrappedKeyFile, wrapContentKey, type KeyStore } from '../keystore/index.ts';
import { generateP256 } from '../pki/index.ts';

export const TLS_KEY_TYPE = 'edgeguard-fleet-tls-key';
const AAD = Buffer.from('edgeguard-fleet-tls-key/1');

const TlsKeyFile = z.strictObject({
  type: z.literal(TLS_KEY_TYPE),
  version: z.literal(1),
  wrappedKey: z.string().max(4096),
  iv: z.string().regex(/^[A-Za-z0-9_-]{16}$/),
  ciphertext: z
    .string()
    .regex(/^[A-Za-z0-9_-]+$/)
    .max(4096),
});

export type CryptoKeyPair = Awaited<ReturnType<typeof generateP256>>;

/** Make a new TLS key pair and write it, wrapped to the key store's binding key, to `path`. */
export async function createWrappedTlsKey(store: KeyStore, path: string): Promise<CryptoKeyPair> {
  const keys = await generateP256(true);
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const ck = generateContentKey();
  try {
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', ck.bytes, iv);
    c.setAAD(AAD);
    const ct = Buffer.concat([c.update(pkcs8), c.final(), c.getAuthTag()]);
    const file = {
      type: TLS_KEY_TYPE,
      version: 1,
      wrappedKey: encodeWrappedKeyFile(wrapContentKey(ck, store.bindingPublicKey)),
      iv: b64url(iv),
      ciphertext: b64url(ct),
    };
    await writeFile(path, JSON.stringify(file, null, 2) + '\n', { mode: 0o600, flag: 'wx' }).catch((e) => {
      throw fsError(e, path, 'write');
    });
  } finally {
    wipe(ck.bytes);
    pkcs8.fill(0);
  }
  return keys;
}

/** Unwrap the TLS key through the key store (the TPM, under its PCR policy); PEM in memory only. */
export async function loadWrappedTlsKey(store: KeyStore, path: string): Promise<string> {
  const text = await readBoundedText(path, FILE_CAPS.key, 'read');
  let parsed: z.infer<typeof TlsKeyFile>;
  try {
    parsed = TlsKeyFile.parse(JSON.parse(text));
  } catch (e) {
    throw new EdgeguardError('EG_KEY_FORMAT', `${path} is not a fleet TLS key file; re-enroll the device.`, {
      cause: e,
    });
  }
  const ck = await store.unwrapContentKey(parsed.wrappedKey);
  try {
    const ct = Buffer.from(parsed.ciphertext, 'base64url');
    if (ct.length < 17) throw new EdgeguardError('EG_KEY_FORMAT', `${path} is truncated.`);
    const d = createDecipheriv('aes-256-gcm', ck.bytes, Buffer.from(parsed.iv, 'base64url'));
    d.setAAD(AAD);
    d.setAuthTag(ct.subarray(ct.length - 16));
    let der: Buffer;
    try {
      der = Buffer.concat([d.update(ct.subarray(0, ct.length - 16)), d.final()]);
    } catch (e) {
      throw new EdgeguardError(
        'EG_TAMPERED',
        `${path} does not decrypt: it was altered or belongs to another device.`,
        { cause: e },
      );
    }
    const pem = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }).export({
      type: 'pkcs8',
      format: 'pem',
    }) as string;
    der.fill(0);
    return pem;
  } finally {
    wipe(ck.bytes);
  }
}
