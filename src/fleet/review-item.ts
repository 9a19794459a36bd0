/**
 * A sealed review item (`*.egr`): one flagged input and the guard's findings, sealed on the device
 * to the operators' review public key with the RFC 9180 sealed box (src/crypto/sealed-box.ts).
 * The device keeps no key that opens it; only `edgeguard review` with the review private key does.
 * Layout (big-endian; documented in docs/formats.md, "Sealed review item"):
 *
 *   offset size field
 *   0      4    magic "EGRV"
 *   4      1    format version (1)
 *   5      2    kem_id  0x0020  DHKEM(X25519, HKDF-SHA256)
 *   7      2    kdf_id  0x0001  HKDF-SHA256
 *   9      2    aead_id 0x0002  AES-256-GCM
 *   11     8    recipient key id: first 8 bytes of SHA-256(raw 32-byte review public key)
 *   19     16   item id (random)
 *   35     8    created, Unix time in milliseconds
 *   43     32   enc: the ephemeral X25519 public key (RFC 9180 Nenc)
 *   75     4    ciphertext length N (17 .. MAX_SEALED_BYTES)
 *   79     N    AES-256-GCM ciphertext || 16-byte tag
 *
 * HPKE info = "edgeguard review item v1"; aad = bytes 0..42 (the header before enc), so the id,
 * time and key id shown before decryption are authenticated when the item is opened. Nothing may
 * follow the ciphertext. The plaintext is: u32 M, M bytes of metadata JSON (UTF-8), u32 L, L input
 * bytes, and nothing after.
 */
import { createHash, randomBytes, type KeyObject } from 'node:crypto';
import { z } from 'zod';
import { EdgeguardError } from '../errors/index.ts';
import {
  HPKE_AEAD_AES_256_GCM,
  HPKE_KDF_HKDF_SHA256,
  HPKE_KEM_X25519_SHA256,
  SEAL_TAG_BYTES,
  X25519_KEY_BYTES,
  openSealed,
  rawPublicKey,
  seal,
} from '../crypto/index.ts';

export const REVIEW_MAGIC = Buffer.from('EGRV');
export const REVIEW_VERSION = 1;
export const REVIEW_INFO = Buffer.from('edgeguard review item v1');
export const REVIEW_AAD_BYTES = 43;
export const REVIEW_HEADER_BYTES = 79;
export const MAX_SEALED_BYTES = 64 * 1024 * 1024;
export const MAX_REVIEW_METADATA_BYTES = 256 * 1024;

/** What the device records about a flagged input (no secrets; the input itself is separate). */
export interface ReviewMetadata {
  kind: 'edgeguard-review-item';
  version: 1;
  id: string;
  createdAt: string;
  contentType: string;
  verdict: 'accept' | 'flag' | 'reject';
  reasons: Array<{ stage: string; code: string; message: string }>;
  answer?: { source: string; label: string; confidence: number };
  primary?: { label: string; confidence: number };
  model?: { name: string; version?: number; headerSha256?: string };
  device?: string;
}

/**
 * What openReviewItem accepts as metadata: the sealed JSON comes from a device, and the review
 * commands print its members in sentences, so each has its type before it is used (an array of
 * objects whose toString is not a function would make a template literal throw a TypeError).
 * Members a later agent may add are kept. openReviewItem returns its output as ReviewMetadata
 * without a cast, so the compiler keeps the two in step.
 */
const reviewMetadataSchema = z.looseObject({
  kind: z.literal('edgeguard-review-item'),
  version: z.literal(1),
  id: z.string(),
  createdAt: z.string(),
  contentType: z.string(),
  verdict: z.enum(['accept', 'flag', 'reject']),
  reasons: z.array(z.looseObject({ stage: z.string(), code: z.string(), message: z.string() })),
  answer: z.looseObject({ source: z.string(), label: z.string(), confidence: z.number() }).optional(),
  primary: z.looseObject({ label: z.string(), confidence: z.number() }).optional(),
  model: z
    .looseObject({ name: z.string(), version: z.number().optional(), headerSha256: z.string().optional() })
    .optional(),
  device: z.string().optional(),
});

export interface ReviewHeader {
  version: number;
  kemId: number;
  kdfId: number;
  aeadId: number;
  recipientKeyId: string;
  id: string;
  createdMs: number;
  enc: Buffer;
  ciphertext: Buffer;
}

export interface OpenedReviewItem {
  header: ReviewHeader;
  metadata: ReviewMetadata;
  input: Buffer;
}

export function reviewKeyId(publicKey: KeyObject): string {
  return createHash('sha256').update(rawPublicKey(publicKey)).digest().subarray(0, 8).toString('hex');
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

/** Seal one input to the review key; returns the item bytes and its id. The input buffer is wiped by the caller. */
export function sealReviewItem(
  publicKey: KeyObject,
  metadata: Omit<ReviewMetadata, 'kind' | 'version' | 'id' | 'createdAt'>,
  input: Uint8Array,
  now = Date.now(),
): { id: string; bytes: Buffer } {
  const idBytes = randomBytes(16);
  const id = idBytes.toString('hex');
  const meta: ReviewMetadata = {
    kind: 'edgeguard-review-item',
    version: 1,
    id,
    createdAt: new Date(now).toISOString(),
    ...metadata,
  };
  const metaBytes = Buffer.from(JSON.stringify(meta), 'utf8');
  if (metaBytes.length > MAX_REVIEW_METADATA_BYTES)
    throw new EdgeguardError('EG_INPUT', 'the review metadata is too large.');
  const header = Buffer.alloc(REVIEW_AAD_BYTES);
  REVIEW_MAGIC.copy(header, 0);
  header.writeUInt8(REVIEW_VERSION, 4);
  header.writeUInt16BE(HPKE_KEM_X25519_SHA256, 5);
  header.writeUInt16BE(HPKE_KDF_HKDF_SHA256, 7);
  header.writeUInt16BE(HPKE_AEAD_AES_256_GCM, 9);
  Buffer.from(reviewKeyId(publicKey), 'hex').copy(header, 11);
  idBytes.copy(header, 19);
  header.writeBigUInt64BE(BigInt(now), 35);
  const plaintext = Buffer.concat([u32(metaBytes.length), metaBytes, u32(input.length), input]);
  try {
    const s = seal(publicKey, REVIEW_INFO, header, plaintext);
    if (s.ciphertext.length > MAX_SEALED_BYTES)
      throw new EdgeguardError('EG_INPUT', 'the input is too large to send to review.');
    return { id, bytes: Buffer.concat([header, s.enc, u32(s.ciphertext.length), s.ciphertext]) };
  } finally {
    plaintext.fill(0);
  }
}

/** Parse the outer layout (no key needed): explicit lengths, no trailing bytes. */
export function parseReviewItem(bytes: Uint8Array, where = 'the review item'): ReviewHeader {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length < REVIEW_HEADER_BYTES)
    throw new EdgeguardError(
      'EG_TRUNCATED',
      `${where} is ${b.length} bytes, shorter than the ${REVIEW_HEADER_BYTES}-byte header.`,
    );
  if (!b.subarray(0, 4).equals(REVIEW_MAGIC))
    throw new EdgeguardError('EG_FORMAT', `${where} is not a sealed review item (bad magic).`);
  const version = b.readUInt8(4);
  if (version !== REVIEW_VERSION)
    throw new EdgeguardError(
      'EG_UNSUPPORTED',
      `${where} has format version ${version}; this edgeguard reads version ${REVIEW_VERSION}.`,
    );
  const kemId = b.readUInt16BE(5);
  const kdfId = b.readUInt16BE(7);
  const aeadId = b.readUInt16BE(9);
  if (kemId !== HPKE_KEM_X25519_SHA256 || kdfId !== HPKE_KDF_HKDF_SHA256 || aeadId !== HPKE_AEAD_AES_256_GCM) {
    throw new EdgeguardError(
      'EG_UNSUPPORTED',
      `${where} uses HPKE suite ${kemId}/${kdfId}/${aeadId}; only DHKEM(X25519)/HKDF-SHA256/AES-256-GCM (32/1/2) is supported.`,
    );
  }
  const createdMs = Number(b.readBigUInt64BE(35));
  const n = b.readUInt32BE(75);
  if (n < SEAL_TAG_BYTES + 1 || n > MAX_SEALED_BYTES)
    throw new EdgeguardError(
      'EG_FORMAT',
      `${where} declares a ciphertext of ${n} bytes, outside 17..${MAX_SEALED_BYTES}.`,
    );
  if (b.length < REVIEW_HEADER_BYTES + n)
    throw new EdgeguardError(
      'EG_TRUNCATED',
      `${where} ends after ${b.length} bytes; its header declares ${REVIEW_HEADER_BYTES + n}.`,
    );
  if (b.length > REVIEW_HEADER_BYTES + n)
    throw new EdgeguardError(
      'EG_TRAILING_DATA',
      `${where} has ${b.length - REVIEW_HEADER_BYTES - n} bytes after its ciphertext.`,
    );
  return {
    version,
    kemId,
    kdfId,
    aeadId,
    recipientKeyId: b.subarray(11, 19).toString('hex'),
    id: b.subarray(19, 35).toString('hex'),
    createdMs,
    enc: Buffer.from(b.subarray(43, 43 + X25519_KEY_BYTES)),
    ciphertext: Buffer.from(b.subarray(REVIEW_HEADER_BYTES, REVIEW_HEADER_BYTES + n)),
  };
}

/** Open an item with the review private key; fails closed on any defect. */
export function openReviewItem(bytes: Uint8Array, privateKey: KeyObject, where = 'the review item'): OpenedReviewItem {
  const header = parseReviewItem(bytes, where);
  const expectedKid = reviewKeyId(privateKey);
  if (header.recipientKeyId !== expectedKid) {
    throw new EdgeguardError(
      'EG_WRONG_KEY',
      `${where} was sealed to review key ${header.recipientKeyId}, not to this key (${expectedKid}).`,
    );
  }
  const aad = Buffer.from(bytes.slice(0, REVIEW_AAD_BYTES));
  const pt = openSealed(header.enc, privateKey, REVIEW_INFO, aad, header.ciphertext);
  try {
    if (pt.length < 8)
      throw new EdgeguardError('EG_FORMAT', `${where} opened to a plaintext too short to hold its lengths.`);
    const m = pt.readUInt32BE(0);
    if (m > MAX_REVIEW_METADATA_BYTES || 4 + m + 4 > pt.length)
      throw new EdgeguardError('EG_FORMAT', `${where} declares ${m} bytes of metadata, more than it holds.`);
    const l = pt.readUInt32BE(4 + m);
    if (8 + m + l !== pt.length)
      throw new EdgeguardError(
        'EG_FORMAT',
        `${where} declares an input of ${l} bytes; the plaintext holds ${pt.length - 8 - m}.`,
      );
    let json: unknown;
    try {
      json = JSON.parse(pt.subarray(4, 4 + m).toString('utf8'));
    } catch (e) {
      throw new EdgeguardError('EG_FORMAT', `${where} holds metadata that is not JSON.`, { cause: e });
    }
    if (
      (json as { kind?: unknown } | null)?.kind !== 'edgeguard-review-item' ||
      (json as { id?: unknown }).id !== header.id
    ) {
      throw new EdgeguardError('EG_FORMAT', `${where} holds metadata of another kind or another item id.`);
    }
    const parsed = reviewMetadataSchema.safeParse(json);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new EdgeguardError(
        'EG_FORMAT',
        `${where} holds metadata that is invalid at ${issue?.path.join('.') || 'the top level'}: ${issue?.message ?? 'schema mismatch'}.`,
      );
    }
    return { header, metadata: parsed.data, input: Buffer.from(pt.subarray(8 + m)) };
  } finally {
    pt.fill(0);
  }
}
