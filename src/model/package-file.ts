/**
 * Reading a package: header, signature, and chunk-by-chunk authenticated decryption into a sink.
 * A chunk's plaintext reaches the sink only after its tag verifies; nothing is held beyond two
 * chunk buffers (one being decrypted, the next being read), so memory is constant in file size.
 */
import { open, readFile, type FileHandle } from 'node:fs/promises';
import type { KeyObject } from 'node:crypto';
import { EdgeguardError, fsError } from '../errors/index.ts';
import { ChunkCipher, TAG_BYTES, createSha256Sink, parseEnvelope, type ContentKey, type DsseEnvelope } from '../crypto/index.ts';
import { chunkCount, expectedPackageSize, parseHeader, FIXED_HEADER_BYTES, type ParsedHeader } from './header.ts';
import { signaturePathFor } from './pack.ts';
import { verifyPackageSignature, type VerifiedSignature } from './signature.ts';
import { readUpTo } from './read.ts';

export interface ChunkSink {
  /** Called once chunk 0 has authenticated: the header is genuine from here on. */
  begin?(plaintextLength: number): void | Promise<void>;
  /** An authenticated chunk. The buffer is wiped after the call returns: copy what you keep. */
  chunk(plaintext: Buffer, index: number, offset: number): void | Promise<void>;
}

export interface DecryptOptions {
  onProgress?: (doneBytes: number, totalBytes: number) => void;
}

export class PackageFile {
  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    readonly parsed: ParsedHeader,
    readonly size: number,
  ) {}

  static async open(path: string): Promise<PackageFile> {
    let fh: FileHandle;
    try {
      fh = await open(path, 'r');
    } catch (e) {
      throw fsError(e, path, 'open the package');
    }
    try {
      const size = (await fh.stat()).size;
      let buf = Buffer.alloc(FIXED_HEADER_BYTES);
      let n = await readUpTo(fh, buf, buf.length, 0, path);
      let r = parseHeader(buf.subarray(0, n));
      if ('needBytes' in r && r.needBytes > n) {
        if (n < FIXED_HEADER_BYTES) throw new EdgeguardError('EG_TRUNCATED', `${path} ends inside the package header; the file was truncated.`);
        buf = Buffer.alloc(r.needBytes);
        n = await readUpTo(fh, buf, buf.length, 0, path);
        if (n < r.needBytes) throw new EdgeguardError('EG_TRUNCATED', `${path} ends inside the package header; the file was truncated.`);
        r = parseHeader(buf);
      }
      if (!('header' in r)) throw new EdgeguardError('EG_FORMAT', `${path}: the package header is incomplete.`);
      return new PackageFile(path, fh, r, size);
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  get header() {
    return this.parsed.header;
  }

  get expectedSize(): number {
    return expectedPackageSize(this.parsed);
  }

  async close(): Promise<void> {
    await this.fh.close();
  }

  /** Verify the DSSE signature (default: PATH.sig.json) against the trusted publisher keys. */
  async verifySignature(trusted: KeyObject[], signaturePath = signaturePathFor(this.path)): Promise<VerifiedSignature> {
    return verifyPackageSignature(await readSignatureFile(signaturePath), this.parsed, trusted);
  }

  /** Decrypt and authenticate every chunk into `sink`, then check the whole-plaintext SHA-256. */
  async decrypt(key: ContentKey, sink: ChunkSink, options: DecryptOptions = {}): Promise<void> {
    const h = this.header;
    if (key.kid !== h.keyId) {
      throw new EdgeguardError('EG_WRONG_KEY', `this package was encrypted with content key ${h.keyId}, but the key given is ${key.kid}.`, {
        details: { expected: h.keyId, given: key.kid },
      });
    }
    const cipher = new ChunkCipher(h.suite, key.bytes, h.salt, this.parsed.digest);
    const n = chunkCount(h.plaintextLength, h.chunkSize);
    const buffers = [Buffer.alloc(h.chunkSize + TAG_BYTES), Buffer.alloc(h.chunkSize + TAG_BYTES)];
    const sealedLength = (i: number) => Math.min(h.chunkSize, h.plaintextLength - i * h.chunkSize) + TAG_BYTES;
    const positionOf = (i: number) => this.parsed.bytes.length + i * (h.chunkSize + TAG_BYTES);
    const readChunk = (i: number) => readUpTo(this.fh, buffers[i % 2]!, sealedLength(i), positionOf(i), this.path);
    const hasher = createSha256Sink(h.plaintextLength);
    let pending: Promise<number> | undefined = readChunk(0);
    try {
      for (let i = 0; i < n; i++) {
        const got = await pending!;
        pending = i + 1 < n ? readChunk(i + 1) : undefined;
        if (got < sealedLength(i)) {
          throw new EdgeguardError('EG_TRUNCATED', `the package ends inside chunk ${i} of ${n}; the file was truncated.`, { details: { chunk: i } });
        }
        const plain = cipher.open(i, i === n - 1, buffers[i % 2]!.subarray(0, got));
        try {
          if (i === 0) {
            // The header is authentic now; its length claims can be trusted for the size check.
            if (this.size < this.expectedSize) {
              throw new EdgeguardError('EG_TRUNCATED', `the package is ${this.size} bytes but its header declares ${this.expectedSize}; the file was truncated.`);
            }
            if (this.size > this.expectedSize) {
              throw new EdgeguardError('EG_TRAILING_DATA', `the package has ${this.size - this.expectedSize} bytes after its last chunk; the file was modified.`);
            }
            await sink.begin?.(h.plaintextLength);
          }
          await hasher.update(plain);
          await sink.chunk(plain, i, i * h.chunkSize);
        } finally {
          plain.fill(0);
        }
        options.onProgress?.(Math.min((i + 1) * h.chunkSize, h.plaintextLength), h.plaintextLength);
      }
      const digest = await hasher.digest();
      if (!digest.equals(h.plaintextSha256)) {
        throw new EdgeguardError(
          'EG_DIGEST_MISMATCH',
          'the decrypted model does not match the digest in its header; it was re-encrypted by a holder of the content key. Do not use it.',
        );
      }
    } finally {
      await pending?.catch(() => undefined);
      for (const b of buffers) b.fill(0);
      cipher.destroy();
      await hasher.close();
    }
  }
}

export async function readSignatureFile(path: string): Promise<DsseEnvelope> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    const err = fsError(e, path, 'read the signature');
    if (err.code === 'EG_NOT_FOUND') {
      throw new EdgeguardError('EG_SIGNATURE_INVALID', `no signature at ${path}; a package is never used unsigned. Pass --sig if it lives elsewhere.`, { cause: e });
    }
    throw err;
  }
  return parseEnvelope(text);
}
