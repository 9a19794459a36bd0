/**
 * The .egm package header. Layout (docs/formats.md has the same table):
 *
 *   off  size  field
 *   0    8     magic 89 45 47 4D 0D 0A 1A 0A ("\x89EGM\r\n\x1a\n", PNG-style: catches text-mode mangling)
 *   8    2     format version (1)
 *   10   1     cipher suite (1 AES-256-GCM, 2 ChaCha20-Poly1305)
 *   11   1     flags (0; any other value is refused)
 *   12   4     chunk size in plaintext bytes
 *   16   32    HKDF salt (random per package)
 *   48   32    content key id (raw RFC 7638 thumbprint)
 *   80   8     plaintext length
 *   88   32    plaintext SHA-256
 *   120  4     metadata length M
 *   124  M     metadata, UTF-8 JSON
 *
 * followed by the chunks. The header's SHA-256 binds it to every chunk (see crypto/stream.ts).
 */
import { EdgeguardError } from '../errors/index.ts';
import { cipherSuiteFromId, CIPHER_SUITES, TAG_BYTES, type CipherSuite } from '../crypto/index.ts';
import { sha256, b64url } from '../crypto/index.ts';
import { parseModelMetadata, type ModelMetadata } from './metadata.ts';

export const MAGIC = Buffer.from([0x89, 0x45, 0x47, 0x4d, 0x0d, 0x0a, 0x1a, 0x0a]);
export const FORMAT_VERSION = 1;
export const FIXED_HEADER_BYTES = 124;
export const MAX_METADATA_BYTES = 64 * 1024;
export const MIN_CHUNK_SIZE = 256;
export const MAX_CHUNK_SIZE = 64 * 1024 * 1024;
/** The nonce's chunk counter is 32 bits (docs/formats.md): a package has at most 2^32 chunks. */
export const MAX_CHUNKS = 2 ** 32;
export const DEFAULT_CHUNK_SIZE = 1024 * 1024;

export interface PackageHeader {
  version: number;
  suite: CipherSuite;
  chunkSize: number;
  salt: Buffer;
  keyId: string;
  plaintextLength: number;
  plaintextSha256: Buffer;
  metadata: ModelMetadata;
}

export interface ParsedHeader {
  header: PackageHeader;
  /** The exact header bytes as read, and their SHA-256 (the AEAD's associated data). */
  bytes: Buffer;
  digest: Buffer;
}

export function encodeHeader(h: PackageHeader): Buffer {
  const meta = Buffer.from(JSON.stringify(h.metadata), 'utf8');
  if (meta.length > MAX_METADATA_BYTES)
    throw new EdgeguardError('EG_USAGE', `model metadata is ${meta.length} bytes; the limit is ${MAX_METADATA_BYTES}.`);
  checkChunkSize(h.chunkSize);
  if (chunkCount(h.plaintextLength, h.chunkSize) > MAX_CHUNKS) {
    throw new EdgeguardError(
      'EG_USAGE',
      `a ${h.plaintextLength}-byte model needs more than 2^32 chunks of ${h.chunkSize} bytes; use a larger --chunk-size.`,
    );
  }
  const out = Buffer.alloc(FIXED_HEADER_BYTES + meta.length);
  MAGIC.copy(out, 0);
  out.writeUInt16BE(h.version, 8);
  out.writeUInt8(CIPHER_SUITES[h.suite], 10);
  out.writeUInt8(0, 11);
  out.writeUInt32BE(h.chunkSize, 12);
  h.salt.copy(out, 16);
  Buffer.from(h.keyId, 'base64url').copy(out, 48);
  out.writeBigUInt64BE(BigInt(h.plaintextLength), 80);
  h.plaintextSha256.copy(out, 88);
  out.writeUInt32BE(meta.length, 120);
  meta.copy(out, FIXED_HEADER_BYTES);
  return out;
}

export function checkChunkSize(n: number): void {
  if (!Number.isInteger(n) || n < MIN_CHUNK_SIZE || n > MAX_CHUNK_SIZE) {
    throw new EdgeguardError(
      'EG_USAGE',
      `chunk size must be an integer from ${MIN_CHUNK_SIZE} to ${MAX_CHUNK_SIZE} bytes.`,
    );
  }
}

function bad(message: string): EdgeguardError {
  return new EdgeguardError('EG_FORMAT', `not a valid edgeguard package: ${message}`);
}

/**
 * Parse a header from the start of `buf`. Returns undefined when `buf` is too short to hold the
 * whole header yet (the caller reads more); throws EG_FORMAT / EG_UNSUPPORTED on bad bytes.
 */
export function parseHeader(buf: Buffer): ParsedHeader | { needBytes: number } {
  if (buf.length < FIXED_HEADER_BYTES) {
    if (!MAGIC.subarray(0, Math.min(buf.length, 8)).equals(buf.subarray(0, Math.min(buf.length, 8))))
      throw bad('wrong magic bytes (is this an .egm file?).');
    return { needBytes: FIXED_HEADER_BYTES };
  }
  if (!buf.subarray(0, 8).equals(MAGIC)) throw bad('wrong magic bytes (is this an .egm file?).');
  const version = buf.readUInt16BE(8);
  if (version !== FORMAT_VERSION) {
    throw new EdgeguardError(
      'EG_UNSUPPORTED',
      `package format version ${version} is not supported by this edgeguard (it reads version ${FORMAT_VERSION}); upgrade edgeguard or repack the model.`,
    );
  }
  const suite = cipherSuiteFromId(buf.readUInt8(10));
  if (!suite)
    throw new EdgeguardError('EG_UNSUPPORTED', `cipher suite ${buf.readUInt8(10)} is unknown to this edgeguard.`);
  if (buf.readUInt8(11) !== 0) throw bad('reserved flags are set.');
  const chunkSize = buf.readUInt32BE(12);
  if (chunkSize < MIN_CHUNK_SIZE || chunkSize > MAX_CHUNK_SIZE) throw bad(`chunk size ${chunkSize} is out of range.`);
  const length = buf.readBigUInt64BE(80);
  if (length > BigInt(Number.MAX_SAFE_INTEGER)) throw bad('plaintext length is implausibly large.');
  if (chunkCount(Number(length), chunkSize) > MAX_CHUNKS)
    throw bad(
      `plaintext length ${length} needs more than 2^32 chunks of ${chunkSize} bytes (the nonce counter's limit).`,
    );
  const metaLength = buf.readUInt32BE(120);
  if (metaLength > MAX_METADATA_BYTES) throw bad(`metadata length ${metaLength} exceeds ${MAX_METADATA_BYTES}.`);
  const total = FIXED_HEADER_BYTES + metaLength;
  if (buf.length < total) return { needBytes: total };
  const metaBytes = buf.subarray(FIXED_HEADER_BYTES, total);
  let metaJson: unknown;
  try {
    metaJson = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(metaBytes));
  } catch {
    throw bad('metadata is not UTF-8 JSON.');
  }
  const metadata = parseModelMetadata(metaJson, 'the package metadata');
  const bytes = Buffer.from(buf.subarray(0, total));
  return {
    header: {
      version,
      suite,
      chunkSize,
      salt: Buffer.from(buf.subarray(16, 48)),
      keyId: b64url(buf.subarray(48, 80)),
      plaintextLength: Number(length),
      plaintextSha256: Buffer.from(buf.subarray(88, 120)),
      metadata,
    },
    bytes,
    digest: sha256(bytes),
  };
}

/** Number of chunks for a plaintext length: an empty model still has one (empty, final) chunk. */
export function chunkCount(plaintextLength: number, chunkSize: number): number {
  return Math.max(1, Math.ceil(plaintextLength / chunkSize));
}

/** Total package size implied by a header, for the truncation / trailing-data check. */
export function expectedPackageSize(parsed: ParsedHeader): number {
  const { plaintextLength, chunkSize } = parsed.header;
  return parsed.bytes.length + plaintextLength + chunkCount(plaintextLength, chunkSize) * TAG_BYTES;
}
