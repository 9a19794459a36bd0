/**
 * Packing: plaintext model file -> NAME.egm (+ NAME.egm.sig.json). Two passes over the input with
 * one chunk in memory at a time: the first hashes it (the whole digest goes in the header, which
 * every chunk is bound to; the shard digests go in the signed statement), the second encrypts. The output appears only complete: it is written to a
 * temporary name beside the target and renamed at the end.
 */
import { randomBytes, createHash } from 'node:crypto';
import { open, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { EdgeguardError, fsError } from '../errors/index.ts';
import {
  ChunkCipher,
  type CipherSuite,
  type ContentKey,
  type DsseEnvelope,
  type SigningKeyPair,
} from '../crypto/index.ts';
import {
  DEFAULT_CHUNK_SIZE,
  FORMAT_VERSION,
  checkChunkSize,
  chunkCount,
  encodeHeader,
  parseHeader,
  type ParsedHeader,
} from './header.ts';
import type { ModelMetadata } from './metadata.ts';
import { signPackageHeader } from './signature.ts';
import { readFully } from './read.ts';
import { checkShardSize, defaultShardSize } from './shards.ts';

export interface PackOptions {
  inputPath: string;
  outputPath: string;
  contentKey: ContentKey;
  signer: SigningKeyPair;
  metadata: ModelMetadata;
  suite?: CipherSuite;
  chunkSize?: number;
  /** Bytes per signed shard, a multiple of the chunk size (default: see src/model/shards.ts). */
  shardSize?: number;
  /** Name of the model file in the signed statement; defaults to the input's base name. */
  resourceName?: string;
  overwrite?: boolean;
  onProgress?: (doneBytes: number, totalBytes: number) => void;
}

export interface PackResult {
  packagePath: string;
  signaturePath: string;
  parsed: ParsedHeader;
  envelope: DsseEnvelope;
  packageBytes: number;
}

export function signaturePathFor(packagePath: string): string {
  return `${packagePath}.sig.json`;
}

export async function packModel(o: PackOptions): Promise<PackResult> {
  const chunkSize = o.chunkSize ?? DEFAULT_CHUNK_SIZE;
  checkChunkSize(chunkSize);
  const shardSize = o.shardSize ?? defaultShardSize(chunkSize);
  checkShardSize(shardSize, chunkSize);
  const suite = o.suite ?? 'aes-256-gcm';
  const signaturePath = signaturePathFor(o.outputPath);
  if (!o.overwrite) {
    for (const p of [o.outputPath, signaturePath]) {
      if (await exists(p)) throw new EdgeguardError('EG_EXISTS', `${p} already exists; remove it or pass --force.`);
    }
  }
  let input;
  try {
    input = await open(o.inputPath, 'r');
  } catch (e) {
    throw fsError(e, o.inputPath, 'read the model');
  }
  const tmpPath = join(dirname(o.outputPath), `.${basename(o.outputPath)}.${randomBytes(6).toString('hex')}.partial`);
  let cipher: ChunkCipher | undefined;
  const buf = Buffer.alloc(chunkSize);
  try {
    const length = (await input.stat()).size;
    const total = length * 2;
    // Pass 1: the plaintext digest, and each shard's (the signed list a verifier checks).
    const hash = createHash('sha256');
    const shardDigests: Buffer[] = [];
    let shard = createHash('sha256');
    for (let off = 0; off < length; off += chunkSize) {
      const n = Math.min(chunkSize, length - off);
      await readFully(input, buf, n, off, o.inputPath);
      hash.update(buf.subarray(0, n));
      shard.update(buf.subarray(0, n));
      if ((off + n) % shardSize === 0 || off + n === length) {
        shardDigests.push(shard.digest());
        shard = createHash('sha256');
      }
      o.onProgress?.(off + n, total);
    }
    if (length === 0) shardDigests.push(shard.digest());
    const plaintextSha256 = hash.digest();
    const headerBytes = encodeHeader({
      version: FORMAT_VERSION,
      suite,
      chunkSize,
      salt: randomBytes(32),
      keyId: o.contentKey.kid,
      plaintextLength: length,
      plaintextSha256,
      metadata: o.metadata,
    });
    const parsed = parseHeader(headerBytes);
    if (!('header' in parsed)) throw new EdgeguardError('EG_INTERNAL', 'encoded header did not parse back.');
    cipher = new ChunkCipher(suite, o.contentKey.bytes, parsed.header.salt, parsed.digest);

    // Pass 2: encrypt, re-hashing to make sure the input did not change between passes.
    const out = await open(tmpPath, 'wx', 0o644).catch((e) => {
      throw fsError(e, o.outputPath, 'write');
    });
    const check = createHash('sha256');
    try {
      await out.write(headerBytes);
      const n = chunkCount(length, chunkSize);
      for (let i = 0; i < n; i++) {
        const off = i * chunkSize;
        const len = Math.min(chunkSize, length - off);
        await readFully(input, buf, len, off, o.inputPath);
        const plain = buf.subarray(0, len);
        check.update(plain);
        await out.write(cipher.seal(i, i === n - 1, plain));
        o.onProgress?.(length + off + len, total);
      }
      await out.sync();
    } finally {
      await out.close();
    }
    if (!check.digest().equals(plaintextSha256)) {
      throw new EdgeguardError(
        'EG_IO',
        `${o.inputPath} changed while it was being packed; pack it again when nothing writes to it.`,
      );
    }
    const envelope = signPackageHeader(
      parsed,
      o.resourceName ?? basename(o.inputPath),
      shardSize,
      shardDigests,
      o.signer,
    );
    await rename(tmpPath, o.outputPath).catch((e) => {
      throw fsError(e, o.outputPath, 'write');
    });
    await writeFile(signaturePath, JSON.stringify(envelope, null, 2) + '\n').catch((e) => {
      throw fsError(e, signaturePath, 'write');
    });
    return {
      packagePath: o.outputPath,
      signaturePath,
      parsed,
      envelope,
      packageBytes: headerBytes.length + length + chunkCount(length, chunkSize) * 16,
    };
  } catch (e) {
    await rm(tmpPath, { force: true });
    throw e;
  } finally {
    buf.fill(0);
    cipher?.destroy();
    await input.close();
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}
