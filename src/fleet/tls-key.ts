/**
 * The device's TLS client key at rest (DIR/fleet/tls-key.json): an ECDSA P-256 key (Node's TLS
 * needs the private key in memory; a TPM-resident key would need an OpenSSL provider), encrypted
 * with AES-256-GCM under a fresh 256-bit key that is wrapped to the device's identity key
 * (RSA-OAEP-256, the wrapped-key file of the key store). With the TPM provider the identity key
 * never leaves the TPM (fixedTPM|fixedParent), so a copied device directory cannot recover the TLS
 * key; it has no PCR policy, so after a boot change the device can still connect and report (and
 * fail its appraisal) while its binding key refuses model keys. Files written before identity keys
 * are wrapped to the binding key: they open while its policy holds and are rewrapped to the
 * identity key then (loadDeviceTlsKey). Layout: docs/formats.md.
 *
 *   { "type": "edgeguard-fleet-tls-key", "version": 1,
 *     "wrappedKey": <wrapped key file text>, "iv": b64url(12), "ciphertext": b64url(PKCS#8 DER || tag16) }
 *   AAD = "edgeguard-fleet-tls-key/1"
 */
import { createCipheriv, createDecipheriv, createPrivateKey, randomBytes, webcrypto } from 'node:crypto';
import { rename, writeFile } from 'node:fs/promises';
import { z } from 'zod';
import { generateContentKey, wipe, b64url } from '../crypto/index.ts';
import { EdgeguardError, fsError, FILE_CAPS, readBoundedText } from '../errors/index.ts';
import { encodeWrappedKeyFile, parseWrappedKeyFile, wrapContentKey, type KeyStore } from '../keystore/index.ts';
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

/** The file text for PKCS#8 DER `pkcs8`, encrypted under a fresh key wrapped to `store`'s key. */
function sealTlsKey(store: KeyStore, pkcs8: Buffer): string {
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
    return JSON.stringify(file, null, 2) + '\n';
  } finally {
    wipe(ck.bytes);
  }
}

/**
 * Make a new TLS key pair and write it, wrapped to `store`'s key (the device identity key, see
 * openDeviceIdentityStore), to `path`.
 */
export async function createWrappedTlsKey(store: KeyStore, path: string): Promise<CryptoKeyPair> {
  const keys = await generateP256(true);
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  try {
    await writeFile(path, sealTlsKey(store, pkcs8), { mode: 0o600, flag: 'wx' }).catch((e) => {
      throw fsError(e, path, 'write');
    });
  } finally {
    pkcs8.fill(0);
  }
  return keys;
}

/**
 * Unwrap the device's TLS key: through `identity` when the file is wrapped to it; otherwise (a
 * file from before identity keys) through `binding`, under its PCR policy, and then rewrap it to
 * `identity` (temporary file, rename) so the next boot change no longer locks the device out.
 */
export async function loadDeviceTlsKey(
  stores: { binding: KeyStore; identity: KeyStore },
  path: string,
): Promise<string> {
  const { parsed } = await readTlsKeyFile(path);
  const wrappedTo = parseWrappedKeyFile(parsed.wrappedKey).bindingKey;
  if (wrappedTo === stores.identity.posture.bindingKey) return loadWrappedTlsKey(stores.identity, path);
  const pem = await loadWrappedTlsKey(stores.binding, path);
  const der = createPrivateKey(pem).export({ type: 'pkcs8', format: 'der' });
  try {
    const tmp = `${path}.tmp-${process.pid}`;
    await writeFile(tmp, sealTlsKey(stores.identity, der), { mode: 0o600 }).catch((e) => {
      throw fsError(e, tmp, 'write');
    });
    await rename(tmp, path);
  } finally {
    der.fill(0);
  }
  return pem;
}

async function readTlsKeyFile(path: string): Promise<{ parsed: z.infer<typeof TlsKeyFile> }> {
  const text = await readBoundedText(path, FILE_CAPS.key, 'read');
  try {
    return { parsed: TlsKeyFile.parse(JSON.parse(text)) };
  } catch (e) {
    throw new EdgeguardError('EG_KEY_FORMAT', `${path} is not a fleet TLS key file; re-enroll the device.`, {
      cause: e,
    });
  }
}

/** Unwrap the TLS key through `store` (whatever key it is wrapped to must be that store's); PEM in memory only. */
export async function loadWrappedTlsKey(store: KeyStore, path: string): Promise<string> {
  const { parsed } = await readTlsKeyFile(path);
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
