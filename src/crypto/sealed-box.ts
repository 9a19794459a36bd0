/**
 * A sealed box: single-shot public-key encryption to a recipient's X25519 key, exactly RFC 9180
 * (HPKE) base mode with the suite
 *
 *   KEM  DHKEM(X25519, HKDF-SHA256)  kem_id  0x0020   (RFC 9180 section 4.1, 7.1)
 *   KDF  HKDF-SHA256                 kdf_id  0x0001   (section 7.2)
 *   AEAD AES-256-GCM                 aead_id 0x0002   (section 7.3)
 *
 * and the single-shot API of section 6.1: `enc, ct = Seal(pkR, info, aad, pt)` /
 * `pt = Open(enc, skR, info, aad, ct)`. The sender holds only an ephemeral key, so once sealed it
 * cannot open its own message: only the holder of the recipient's private key can.
 *
 * Checked against RFC 9180 Appendix A.1.1 (the same KEM and KDF with AES-128-GCM) in
 * test/crypto/sealed-box.test.ts. Keys are standard PKCS#8 / SPKI PEM (RFC 8410).
 */
import {
  createHmac,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  createCipheriv,
  createDecipheriv,
  type KeyObject,
} from 'node:crypto';
import { EdgeguardError } from '../errors/index.ts';

export const HPKE_KEM_X25519_SHA256 = 0x0020;
export const HPKE_KDF_HKDF_SHA256 = 0x0001;
export const HPKE_AEAD_AES_256_GCM = 0x0002;
/** Length of `enc` (Nenc), of a serialized public key (Npk) and private key (Nsk) for X25519. */
export const X25519_KEY_BYTES = 32;
const N_SECRET = 32; // Nsecret of DHKEM(X25519, HKDF-SHA256)
const N_N = 12; // Nn
const N_H = 32; // Nh of HKDF-SHA256
export const SEAL_TAG_BYTES = 16; // Nt
const MODE_BASE = 0x00;

function i2osp(n: number, w: number): Buffer {
  const b = Buffer.alloc(w);
  b.writeUIntBE(n, 0, w);
  return b;
}

const KEM_SUITE_ID = Buffer.concat([Buffer.from('KEM'), i2osp(HPKE_KEM_X25519_SHA256, 2)]); // section 4.1
/** The version label of RFC 9180 (section 4). */
const VERSION_LABEL = Buffer.from('HPKE-v1');

/**
 * The AEAD of a suite. Production code uses AES-256-GCM only; AES-128-GCM exists so that the
 * published RFC 9180 Appendix A.1 vector (the same KEM and KDF with AES-128-GCM) can check the
 * shared KEM, key schedule and nonce code paths.
 */
export interface AeadSuite {
  aeadId: number;
  cipher: 'aes-256-gcm' | 'aes-128-gcm';
  /** Nk */
  keyBytes: number;
}
export const AES_256_GCM: AeadSuite = { aeadId: HPKE_AEAD_AES_256_GCM, cipher: 'aes-256-gcm', keyBytes: 32 };
export const AES_128_GCM_FOR_TEST_VECTORS: AeadSuite = { aeadId: 0x0001, cipher: 'aes-128-gcm', keyBytes: 16 };

/** suite_id = "HPKE" || I2OSP(kem_id, 2) || I2OSP(kdf_id, 2) || I2OSP(aead_id, 2) (section 5.1). */
function hpkeSuiteId(aead: AeadSuite): Buffer {
  return Buffer.concat([
    Buffer.from('HPKE'),
    i2osp(HPKE_KEM_X25519_SHA256, 2),
    i2osp(HPKE_KDF_HKDF_SHA256, 2),
    i2osp(aead.aeadId, 2),
  ]);
}

/** HKDF-Extract (RFC 5869 section 2.2): PRK = HMAC-Hash(salt, IKM); an empty salt is Nh zeros. */
function extract(salt: Uint8Array, ikm: Uint8Array): Buffer {
  return createHmac('sha256', salt.length === 0 ? Buffer.alloc(N_H) : salt)
    .update(ikm)
    .digest();
}

/** HKDF-Expand (RFC 5869 section 2.3). */
function expand(prk: Uint8Array, info: Uint8Array, length: number): Buffer {
  if (length > 255 * N_H) throw new RangeError('HKDF-Expand length too large');
  const out: Buffer[] = [];
  let t: Buffer = Buffer.alloc(0);
  for (let i = 1; out.length * N_H < length; i++) {
    t = createHmac('sha256', prk)
      .update(t)
      .update(info)
      .update(Buffer.from([i]))
      .digest();
    out.push(t);
  }
  return Buffer.concat(out).subarray(0, length);
}

/** LabeledExtract (RFC 9180 section 4): Extract(salt, "HPKE-v1" || suite_id || label || ikm). */
function labeledExtract(suiteId: Buffer, salt: Uint8Array, label: string, ikm: Uint8Array): Buffer {
  return extract(salt, Buffer.concat([VERSION_LABEL, suiteId, Buffer.from(label), ikm]));
}

/** LabeledExpand (RFC 9180 section 4): Expand(prk, I2OSP(L, 2) || "HPKE-v1" || suite_id || label || info, L). */
function labeledExpand(suiteId: Buffer, prk: Uint8Array, label: string, info: Uint8Array, length: number): Buffer {
  return expand(prk, Buffer.concat([i2osp(length, 2), VERSION_LABEL, suiteId, Buffer.from(label), info]), length);
}

// --- X25519 keys (RFC 7748; DER wrappers of RFC 8410) -------------------------------------------

const PKCS8_X25519_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI_X25519_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');

export interface SealKeyPair {
  privateKey: KeyObject;
  publicKey: KeyObject;
}

function x25519PrivateFromRaw(sk: Uint8Array): KeyObject {
  if (sk.length !== X25519_KEY_BYTES)
    throw new EdgeguardError('EG_KEY_FORMAT', `an X25519 private key is ${X25519_KEY_BYTES} bytes, not ${sk.length}.`);
  return createPrivateKey({ key: Buffer.concat([PKCS8_X25519_PREFIX, sk]), format: 'der', type: 'pkcs8' });
}

/** DeserializePublicKey (section 7.1.1): the 32-byte u-coordinate. */
export function x25519PublicFromRaw(pk: Uint8Array): KeyObject {
  if (pk.length !== X25519_KEY_BYTES)
    throw new EdgeguardError('EG_KEY_FORMAT', `an X25519 public key is ${X25519_KEY_BYTES} bytes, not ${pk.length}.`);
  return createPublicKey({ key: Buffer.concat([SPKI_X25519_PREFIX, pk]), format: 'der', type: 'spki' });
}

/** SerializePublicKey (section 7.1.1). */
export function rawPublicKey(key: KeyObject): Buffer {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  if (pub.asymmetricKeyType !== 'x25519')
    throw new EdgeguardError(
      'EG_KEY_FORMAT',
      `the review key must be an X25519 key, not ${pub.asymmetricKeyType ?? 'a secret key'}.`,
    );
  const der = pub.export({ format: 'der', type: 'spki' });
  if (
    der.length !== SPKI_X25519_PREFIX.length + X25519_KEY_BYTES ||
    !der.subarray(0, SPKI_X25519_PREFIX.length).equals(SPKI_X25519_PREFIX)
  ) {
    throw new EdgeguardError('EG_KEY_FORMAT', 'the X25519 public key has an unexpected encoding.');
  }
  return der.subarray(SPKI_X25519_PREFIX.length);
}

export function rawPrivateKey(key: KeyObject): Buffer {
  if (key.type !== 'private' || key.asymmetricKeyType !== 'x25519')
    throw new EdgeguardError('EG_KEY_FORMAT', 'expected an X25519 private key.');
  const der = key.export({ format: 'der', type: 'pkcs8' });
  if (der.length !== PKCS8_X25519_PREFIX.length + X25519_KEY_BYTES)
    throw new EdgeguardError('EG_KEY_FORMAT', 'the X25519 private key has an unexpected encoding.');
  return der.subarray(PKCS8_X25519_PREFIX.length);
}

export function generateSealKeyPair(): SealKeyPair {
  return generateKeyPairSync('x25519');
}

/** DeriveKeyPair (section 7.1.3) for X25519: sk = LabeledExpand(LabeledExtract("", "dkp_prk", ikm), "sk", "", Nsk). */
export function deriveSealKeyPair(ikm: Uint8Array): SealKeyPair {
  const dkpPrk = labeledExtract(KEM_SUITE_ID, Buffer.alloc(0), 'dkp_prk', ikm);
  const sk = labeledExpand(KEM_SUITE_ID, dkpPrk, 'sk', Buffer.alloc(0), X25519_KEY_BYTES);
  const privateKey = x25519PrivateFromRaw(sk);
  sk.fill(0);
  return { privateKey, publicKey: createPublicKey(privateKey) };
}

export function encodeSealPrivateKeyPem(key: KeyObject): string {
  rawPrivateKey(key);
  return key.export({ format: 'pem', type: 'pkcs8' }).toString();
}

export function encodeSealPublicKeyPem(key: KeyObject): string {
  rawPublicKey(key);
  return (key.type === 'private' ? createPublicKey(key) : key).export({ format: 'pem', type: 'spki' }).toString();
}

export function parseSealPublicKeyPem(pem: string, where = 'the review public key'): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: pem, format: 'pem' });
  } catch (e) {
    throw new EdgeguardError('EG_KEY_FORMAT', `${where} is not a PEM public key (SubjectPublicKeyInfo).`, { cause: e });
  }
  if (key.asymmetricKeyType !== 'x25519')
    throw new EdgeguardError(
      'EG_KEY_FORMAT',
      `${where} is a ${key.asymmetricKeyType} key; review keys are X25519 (make one with \`edgeguard review keygen\`).`,
    );
  return key;
}

export function parseSealPrivateKeyPem(pem: string, where = 'the review private key'): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: 'pem' });
  } catch (e) {
    throw new EdgeguardError('EG_KEY_FORMAT', `${where} is not a PEM private key (PKCS#8).`, { cause: e });
  }
  if (key.asymmetricKeyType !== 'x25519')
    throw new EdgeguardError('EG_KEY_FORMAT', `${where} is a ${key.asymmetricKeyType} key; review keys are X25519.`);
  return key;
}

// --- DHKEM(X25519, HKDF-SHA256), section 4.1 ----------------------------------------------------

/** DH(sk, pk) with the all-zero check of section 7.1.4 (a small-order public key). */
function dh(sk: KeyObject, pk: KeyObject): Buffer {
  let z: Buffer;
  try {
    z = diffieHellman({ privateKey: sk, publicKey: pk });
  } catch (e) {
    throw new EdgeguardError(
      'EG_TAMPERED',
      "the sealed item's ephemeral key is invalid (X25519 failed); the item is corrupt or forged.",
      { cause: e },
    );
  }
  if (z.every((b) => b === 0))
    throw new EdgeguardError(
      'EG_TAMPERED',
      "the sealed item's ephemeral key is a small-order point; the item is forged.",
    );
  return z;
}

/** ExtractAndExpand(dh, kem_context) (section 4.1). */
function extractAndExpand(dhValue: Buffer, kemContext: Buffer): Buffer {
  const eaePrk = labeledExtract(KEM_SUITE_ID, Buffer.alloc(0), 'eae_prk', dhValue);
  return labeledExpand(KEM_SUITE_ID, eaePrk, 'shared_secret', kemContext, N_SECRET);
}

function encap(pkR: KeyObject, ephemeral?: SealKeyPair): { sharedSecret: Buffer; enc: Buffer } {
  const e = ephemeral ?? generateSealKeyPair();
  const dhValue = dh(e.privateKey, pkR);
  const enc = rawPublicKey(e.publicKey);
  const kemContext = Buffer.concat([enc, rawPublicKey(pkR)]);
  const sharedSecret = extractAndExpand(dhValue, kemContext);
  dhValue.fill(0);
  return { sharedSecret, enc };
}

function decap(enc: Uint8Array, skR: KeyObject): Buffer {
  const pkE = x25519PublicFromRaw(enc);
  const dhValue = dh(skR, pkE);
  const kemContext = Buffer.concat([enc, rawPublicKey(skR)]);
  const sharedSecret = extractAndExpand(dhValue, kemContext);
  dhValue.fill(0);
  return sharedSecret;
}

// --- Key schedule (section 5.1), base mode: psk = psk_id = "" ------------------------------------

export interface HpkeContext {
  key: Buffer;
  baseNonce: Buffer;
  exporterSecret: Buffer;
  keyScheduleContext: Buffer;
  secret: Buffer;
}

function keySchedule(sharedSecret: Buffer, info: Uint8Array, aead: AeadSuite = AES_256_GCM): HpkeContext {
  const HPKE_SUITE_ID = hpkeSuiteId(aead);
  const empty = Buffer.alloc(0);
  const pskIdHash = labeledExtract(HPKE_SUITE_ID, empty, 'psk_id_hash', empty);
  const infoHash = labeledExtract(HPKE_SUITE_ID, empty, 'info_hash', info);
  const keyScheduleContext = Buffer.concat([Buffer.from([MODE_BASE]), pskIdHash, infoHash]);
  const secret = labeledExtract(HPKE_SUITE_ID, sharedSecret, 'secret', empty);
  return {
    key: labeledExpand(HPKE_SUITE_ID, secret, 'key', keyScheduleContext, aead.keyBytes),
    baseNonce: labeledExpand(HPKE_SUITE_ID, secret, 'base_nonce', keyScheduleContext, N_N),
    exporterSecret: labeledExpand(HPKE_SUITE_ID, secret, 'exp', keyScheduleContext, N_H),
    keyScheduleContext,
    secret,
  };
}

/** ComputeNonce(seq) (section 5.2): base_nonce XOR I2OSP(seq, Nn). */
function computeNonce(baseNonce: Buffer, seq: number): Buffer {
  const n = Buffer.from(baseNonce);
  const s = i2osp(seq, 6);
  for (let i = 0; i < s.length; i++) n[N_N - s.length + i]! ^= s[i]!;
  return n;
}

function aeadSeal(key: Buffer, nonce: Buffer, aad: Uint8Array, pt: Uint8Array): Buffer {
  const c = createCipheriv(key.length === 16 ? 'aes-128-gcm' : 'aes-256-gcm', key, nonce);
  c.setAAD(aad);
  return Buffer.concat([c.update(pt), c.final(), c.getAuthTag()]);
}

function aeadOpen(key: Buffer, nonce: Buffer, aad: Uint8Array, ct: Uint8Array): Buffer {
  if (ct.length < SEAL_TAG_BYTES)
    throw new EdgeguardError('EG_TRUNCATED', 'the sealed ciphertext is shorter than its authentication tag.');
  const body = ct.subarray(0, ct.length - SEAL_TAG_BYTES);
  const tag = ct.subarray(ct.length - SEAL_TAG_BYTES);
  const d = createDecipheriv(key.length === 16 ? 'aes-128-gcm' : 'aes-256-gcm', key, nonce);
  d.setAAD(aad);
  d.setAuthTag(tag);
  try {
    return Buffer.concat([d.update(body), d.final()]);
  } catch (e) {
    throw new EdgeguardError(
      'EG_WRONG_KEY',
      'the sealed item does not open: it was sealed to another review key, or it was altered.',
      { cause: e },
    );
  }
}

/**
 * Test-vector access to the sender side: SetupBaseS with a fixed ephemeral key, then `count`
 * sequential Seal calls (section 5.2). Not for production use: the ephemeral key must be fresh.
 */
export function setupBaseSenderForTest(
  pkR: KeyObject,
  info: Uint8Array,
  ephemeral: SealKeyPair,
  aead: AeadSuite = AES_256_GCM,
) {
  const { sharedSecret, enc } = encap(pkR, ephemeral);
  const ctx = keySchedule(sharedSecret, info, aead);
  let seq = 0;
  return {
    enc,
    sharedSecret,
    context: ctx,
    seal: (aad: Uint8Array, pt: Uint8Array) => aeadSeal(ctx.key, computeNonce(ctx.baseNonce, seq++), aad, pt),
  };
}

export function setupBaseRecipientForTest(
  enc: Uint8Array,
  skR: KeyObject,
  info: Uint8Array,
  aead: AeadSuite = AES_256_GCM,
) {
  const ctx = keySchedule(decap(enc, skR), info, aead);
  let seq = 0;
  return {
    context: ctx,
    open: (aad: Uint8Array, ct: Uint8Array) => aeadOpen(ctx.key, computeNonce(ctx.baseNonce, seq++), aad, ct),
  };
}

export interface Sealed {
  /** The encapsulated ephemeral public key (32 bytes). */
  enc: Buffer;
  /** AES-256-GCM ciphertext with its 16-byte tag appended. */
  ciphertext: Buffer;
}

/** Single-shot Seal (RFC 9180 section 6.1, base mode). */
export function seal(pkR: KeyObject, info: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Sealed {
  const { sharedSecret, enc } = encap(pkR);
  const ctx = keySchedule(sharedSecret, info);
  try {
    return { enc, ciphertext: aeadSeal(ctx.key, ctx.baseNonce, aad, plaintext) };
  } finally {
    for (const b of [sharedSecret, ctx.key, ctx.secret, ctx.exporterSecret]) b.fill(0);
  }
}

/** Single-shot Open (RFC 9180 section 6.1, base mode); fails closed with EG_WRONG_KEY. */
export function open(
  enc: Uint8Array,
  skR: KeyObject,
  info: Uint8Array,
  aad: Uint8Array,
  ciphertext: Uint8Array,
): Buffer {
  const sharedSecret = decap(enc, skR);
  const ctx = keySchedule(sharedSecret, info);
  try {
    return aeadOpen(ctx.key, ctx.baseNonce, aad, ciphertext);
  } finally {
    for (const b of [sharedSecret, ctx.key, ctx.secret, ctx.exporterSecret]) b.fill(0);
  }
}
