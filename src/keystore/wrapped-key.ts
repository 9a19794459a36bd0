/**
 * The wrapped content key file (`model.key.wrapped`): a model content key encrypted to one
 * device's binding public key with RSAES-OAEP (RFC 8017, 7.1) using SHA-256 for the hash and MGF1,
 * and an empty label: the JWA "RSA-OAEP-256" algorithm (RFC 7518, 4.3). The binding key is named
 * by its RFC 7638 JWK thumbprint, the content key by its kid. Layout: docs/formats.md.
 */
import { constants, createPublicKey, publicEncrypt, type KeyObject } from 'node:crypto';
import { b64url, fromB64url, sha256, type ContentKey } from '../crypto/index.ts';
import { describeValue, EdgeguardError } from '../errors/index.ts';

export const WRAPPED_KEY_TYPE = 'edgeguard-wrapped-key';
export const WRAPPED_KEY_VERSION = 1;
export const WRAP_ALG = 'RSA-OAEP-256';

export interface WrappedKeyFile {
  type: typeof WRAPPED_KEY_TYPE;
  version: typeof WRAPPED_KEY_VERSION;
  /** The content key's id (RFC 7638 thumbprint of its JWK, base64url). */
  kid: string;
  alg: typeof WRAP_ALG;
  /** RFC 7638 thumbprint (SHA-256, base64url) of the binding public key it is wrapped to. */
  bindingKey: string;
  /** RSA-OAEP ciphertext, base64url, exactly the modulus length. */
  ciphertext: string;
}

const MIN_RSA_BITS = 2048;

/** RFC 7638 section 3.2: the RSA thumbprint hashes `{"e":...,"kty":"RSA","n":...}`. */
export function bindingKeyThumbprint(key: KeyObject): string {
  if (key.asymmetricKeyType !== 'rsa')
    throw new EdgeguardError('EG_KEY_FORMAT', 'a binding key must be an RSA public key.');
  const jwk = key.export({ format: 'jwk' });
  return b64url(sha256(Buffer.from(`{"e":"${jwk.e}","kty":"RSA","n":"${jwk.n}"}`)));
}

export function parseBindingPublicKey(pem: string, source = 'the binding public key'): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch (e) {
    throw new EdgeguardError(
      'EG_KEY_FORMAT',
      `${source} is not a PEM public key; pass the binding.pub written by \`edgeguard device init\`.`,
      { cause: e },
    );
  }
  if (key.asymmetricKeyType !== 'rsa')
    throw new EdgeguardError('EG_KEY_FORMAT', `${source} is not an RSA key; device binding keys are RSA-2048.`);
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
  if (bits < MIN_RSA_BITS)
    throw new EdgeguardError(
      'EG_KEY_FORMAT',
      `${source} is only ${bits} bits; binding keys must be at least ${MIN_RSA_BITS}.`,
    );
  return key;
}

/** Wrap (operator side, no TPM): RSA-OAEP-256 of the 32 key bytes to the binding key. */
export function wrapContentKey(key: ContentKey, bindingPublic: KeyObject): WrappedKeyFile {
  const ct = publicEncrypt(
    { key: bindingPublic, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
    key.bytes,
  );
  return {
    type: WRAPPED_KEY_TYPE,
    version: WRAPPED_KEY_VERSION,
    kid: key.kid,
    alg: WRAP_ALG,
    bindingKey: bindingKeyThumbprint(bindingPublic),
    ciphertext: b64url(ct),
  };
}

export function encodeWrappedKeyFile(w: WrappedKeyFile): string {
  const ordered = {
    type: w.type,
    version: w.version,
    kid: w.kid,
    alg: w.alg,
    bindingKey: w.bindingKey,
    ciphertext: w.ciphertext,
  };
  return JSON.stringify(ordered, null, 2) + '\n';
}

const bad = (why: string) =>
  new EdgeguardError(
    'EG_KEY_FORMAT',
    `the wrapped key file is not valid (${why}); make it with \`edgeguard key wrap\`.`,
  );

/** Strict parse: known members only, each with its exact form. */
export function parseWrappedKeyFile(text: string): WrappedKeyFile & { ciphertextBytes: Buffer } {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw bad('not JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad('not a JSON object');
  const o = v as Record<string, unknown>;
  const allowed = ['type', 'version', 'kid', 'alg', 'bindingKey', 'ciphertext'];
  for (const k of Object.keys(o)) if (!allowed.includes(k)) throw bad(`unknown member "${k}"`);
  if (o.type !== WRAPPED_KEY_TYPE) throw bad(`type is not "${WRAPPED_KEY_TYPE}"`);
  if (o.version !== WRAPPED_KEY_VERSION)
    throw new EdgeguardError(
      'EG_UNSUPPORTED',
      `wrapped key file version ${describeValue(o.version)} is not supported (this build reads version ${WRAPPED_KEY_VERSION}).`,
    );
  if (o.alg !== WRAP_ALG)
    throw new EdgeguardError(
      'EG_UNSUPPORTED',
      `wrapping algorithm ${describeValue(o.alg)} is not supported (only ${WRAP_ALG}).`,
    );
  const b64 = /^[A-Za-z0-9_-]{43}$/;
  if (typeof o.kid !== 'string' || !b64.test(o.kid)) throw bad('kid is not a 43-character base64url thumbprint');
  if (typeof o.bindingKey !== 'string' || !b64.test(o.bindingKey))
    throw bad('bindingKey is not a 43-character base64url thumbprint');
  if (typeof o.ciphertext !== 'string') throw bad('ciphertext is missing');
  const ct = fromB64url(o.ciphertext);
  if (!ct || ct.length < MIN_RSA_BITS / 8 || ct.length > 1024)
    throw bad('ciphertext is not base64url of an RSA-2048+ block');
  return {
    type: WRAPPED_KEY_TYPE,
    version: WRAPPED_KEY_VERSION,
    kid: o.kid,
    alg: WRAP_ALG,
    bindingKey: o.bindingKey,
    ciphertext: o.ciphertext,
    ciphertextBytes: ct,
  };
}
