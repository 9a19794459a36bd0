/**
 * Reading a package: header, signature, and authenticated decryption into a sink, chunk by chunk
 * in order. A chunk's plaintext reaches the sink only after its tag verifies and (with a verified
 * signature) the SHA-256 of its whole shard matches the signed one; memory is a fixed number of
 * shard slots, constant in file size. Shards are opened by the native engine
 * (src/model/native-opener.ts) when it is built, else by the JavaScript one (chunk-opener.ts).
 */
import { open, type FileHandle } from 'node:fs/promises';
import { createHash, type KeyObject } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { EdgeguardError, fsError, readBoundedText } from '../errors/index.ts';
import { deriveStreamMaterial, parseEnvelope, type ContentKey, type DsseEnvelope } from '../crypto/index.ts';
import { openShards, startOpenWorkers, type OpenPlan, type OpenWorkers } from './chunk-opener.ts';
import { nativeBinding, nativeOpenerStatus, openShardsNative } from './native-opener.ts';
import { checkShardSize, defaultShardSize, shardCount, type SignedShards } from './shards.ts';
import { chunkCount, expectedPackageSize, parseHeader, FIXED_HEADER_BYTES, type ParsedHeader } from './header.ts';
import { signaturePathFor } from './pack.ts';
import { verifyPackageSignature, type VerifiedSignature } from './signature.ts';
import { readUpTo } from './read.ts';
import { engineTuning } from './engine-tuning.ts';

export interface ChunkSink {
  /** Called once chunk 0 has authenticated: the header is genuine from here on. */
  begin?(plaintextLength: number): void | Promise<void>;
  /** An authenticated chunk. The buffer is wiped after the call returns: copy what you keep. */
  chunk(plaintext: Buffer, index: number, offset: number): void | Promise<void>;
}

export interface DecryptOptions {
  onProgress?: (doneBytes: number, totalBytes: number) => void;
  /** Signed shard digests (from verifySignature): checked per shard, and shards open in parallel. */
  shards?: SignedShards;
  /** Workers from startDecryptWorkers, started while the signature was checked; decrypt ends them. */
  started?: OpenWorkers;
  /**
   * Who opens the shards: 'native' (the addon on libuv's pool; an error if it is not built),
   * 'js' (worker threads, or this thread for small packages), or 'auto' (the default: native when
   * built, else js). How each spreads its work is tuned in engine-tuning.ts, not here.
   */
  engine?: 'auto' | 'native' | 'js';
}

/** Below this, starting worker threads costs more than it saves: shards open on the calling thread. */
export const PARALLEL_FROM_BYTES = 8 * 1024 * 1024;
const MAX_WORKERS = 4;
/**
 * Whether the calling thread opens shards all along too (not only while the workers start). On 2
 * CPUs, one worker plus this thread ran 20-30% slower than two workers, and two workers plus this
 * thread no faster (docs/benchmarks.md, 2026-11-26): off.
 */
const MAIN_OPENS = false;
const defaultWorkers = () => availableParallelism();
/**
 * Native engine: shards opened at once, twice the CPUs but no more than libuv's pool has threads
 * (UV_THREADPOOL_SIZE, 4 unless set). More jobs than CPUs keeps every core busy while this thread
 * hands out the next shard: on 2 CPUs, 4 at once verified 256 MiB 5-10% faster than 2 or 3
 * (docs/benchmarks.md, 2026-11-26). Beyond the pool's size they would only queue.
 */
function defaultInflight(): number {
  const pool = Number.parseInt(process.env.UV_THREADPOOL_SIZE ?? '', 10);
  return Math.max(1, Math.min(Number.isSafeInteger(pool) && pool > 0 ? pool : 4, 2 * availableParallelism()));
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
        if (n < FIXED_HEADER_BYTES)
          throw new EdgeguardError('EG_TRUNCATED', `${path} ends inside the package header; the file was truncated.`);
        buf = Buffer.alloc(r.needBytes);
        n = await readUpTo(fh, buf, buf.length, 0, path);
        if (n < r.needBytes)
          throw new EdgeguardError('EG_TRUNCATED', `${path} ends inside the package header; the file was truncated.`);
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

  /** The worker count decrypt would use for `shards` shards (0: the calling thread alone). */
  private workerCount(shards: number, options: DecryptOptions): number {
    if (useNative(options)) return 0;
    const tuning = engineTuning();
    const parallel = this.header.plaintextLength >= (tuning.parallelFrom ?? PARALLEL_FROM_BYTES) && shards > 1;
    return parallel ? Math.max(1, Math.min(tuning.workers ?? defaultWorkers(), MAX_WORKERS, shards)) : 0;
  }

  /**
   * Start the decryption workers that `decrypt` will want, before the signature is checked (a
   * worker takes tens of milliseconds to boot); undefined when it will not want any. Pass them to
   * decrypt as `started`, or end them with `terminate()` if it is not called. They get no key
   * before decrypt runs.
   */
  startDecryptWorkers(options: DecryptOptions = {}): OpenWorkers | undefined {
    // The native engine needs no workers (libuv's pool threads are started once per process).
    if (useNative(options)) return undefined;
    // The signed shard size is not known yet: at most one shard per chunk.
    const n = this.workerCount(chunkCount(this.header.plaintextLength, this.header.chunkSize), options);
    return n > 0 ? startOpenWorkers(n) : undefined;
  }

  /**
   * Decrypt and authenticate every chunk into `sink`, in order (`null`: authenticate and check
   * only, handing no plaintext out of the decrypting threads). With `shards` (the digests from a
   * verified signature) each shard's plaintext is checked against its signed digest before any of
   * its chunks reaches the sink, and shards are opened on worker threads in parallel. Without, the
   * whole plaintext's SHA-256 is checked against the header at the end (one thread).
   */
  async decrypt(key: ContentKey, sink: ChunkSink | null, options: DecryptOptions = {}): Promise<void> {
    try {
      await this.decryptWith(key, sink, options);
    } finally {
      await options.started?.terminate();
    }
  }

  private async decryptWith(key: ContentKey, sink: ChunkSink | null, options: DecryptOptions): Promise<void> {
    const h = this.header;
    if (key.kid !== h.keyId) {
      throw new EdgeguardError(
        'EG_WRONG_KEY',
        `this package was encrypted with content key ${h.keyId}, but the key given is ${key.kid}.`,
        {
          details: { expected: h.keyId, given: key.kid },
        },
      );
    }
    const shardSize = options.shards?.shardSize ?? defaultShardSize(h.chunkSize);
    checkShardSize(shardSize, h.chunkSize);
    const shards = shardCount(h.plaintextLength, shardSize);
    if (options.shards && options.shards.digests.length !== 32 * shards) {
      throw new EdgeguardError(
        'EG_SIGNATURE_INVALID',
        `the signature lists ${options.shards.digests.length / 32} shard digests; this package has ${shards} shards.`,
      );
    }
    const n = chunkCount(h.plaintextLength, h.chunkSize);
    const { key: subkey, prefix } = deriveStreamMaterial(h.suite, key.bytes, h.salt, this.parsed.digest);
    const plan: OpenPlan = {
      fd: this.fh.fd,
      path: this.path,
      suite: h.suite,
      key: subkey,
      prefix,
      aad: this.parsed.digest,
      headerBytes: this.parsed.bytes.length,
      chunkSize: h.chunkSize,
      plaintextLength: h.plaintextLength,
      chunks: n,
      shardChunks: shardSize / h.chunkSize,
      shards,
      expected: options.shards?.digests,
    };
    // Without signed shard digests, the header's whole-plaintext digest is the check.
    const whole = options.shards ? undefined : createHash('sha256');
    // Nothing to hand out (verify): the plaintext never leaves the threads that decrypt it.
    const discard = sink === null && !whole;
    let workers = this.workerCount(shards, options);
    let started = options.started;
    if (started && workers === 0) {
      await started.terminate();
      started = undefined;
    }
    // (More workers than shards, when the signed shards are bigger than guessed, leaves some idle.)
    if (started) workers = started.count;
    try {
      const deliver = async (s: number, plain: Buffer) => {
        if (s === 0) {
          // Chunk 0 authenticated: the header is genuine, its length claims can be trusted.
          if (this.size < this.expectedSize) {
            throw new EdgeguardError(
              'EG_TRUNCATED',
              `the package is ${this.size} bytes but its header declares ${this.expectedSize}; the file was truncated.`,
            );
          }
          if (this.size > this.expectedSize) {
            throw new EdgeguardError(
              'EG_TRAILING_DATA',
              `the package has ${this.size - this.expectedSize} bytes after its last chunk; the file was modified.`,
            );
          }
          await sink?.begin?.(h.plaintextLength);
        }
        whole?.update(plain);
        const first = s * plan.shardChunks;
        for (let j = 0; sink && (j * h.chunkSize < plain.length || (j === 0 && plain.length === 0)); j++) {
          const piece = plain.subarray(j * h.chunkSize, Math.min(plain.length, (j + 1) * h.chunkSize));
          await sink.chunk(piece, first + j, (first + j) * h.chunkSize);
        }
        const done = Math.min(h.plaintextLength, (s + 1) * shardSize);
        options.onProgress?.(done, h.plaintextLength);
      };
      const native = useNative(options) ? nativeBinding() : null;
      if (native) {
        await started?.terminate();
        const inflight = engineTuning().inflight ?? defaultInflight();
        await openShardsNative(native, plan, deliver, { inflight, discard });
      } else {
        await openShards(plan, deliver, {
          workers,
          helpWhileStarting: engineTuning().helpWhileStarting,
          mainOpens: engineTuning().mainOpens ?? MAIN_OPENS,
          started,
          discard,
        });
      }
      if (whole && !whole.digest().equals(h.plaintextSha256)) {
        throw new EdgeguardError(
          'EG_DIGEST_MISMATCH',
          'the decrypted model does not match the digest in its header; it was re-encrypted by a holder of the content key. Do not use it.',
        );
      }
    } finally {
      subkey.fill(0);
      prefix.fill(0);
    }
  }
}

/**
 * Which engine decrypt would use with these options: 'native' (the addon, OpenSSL on libuv's pool)
 * or 'js' (worker threads, or the calling thread for small packages); with the reason when the
 * native one is not available.
 */
export function decryptEngine(options: Pick<DecryptOptions, 'engine'> = {}): {
  engine: 'native' | 'js';
  reason?: string;
} {
  if (useNative(options)) return { engine: 'native' };
  const status = nativeOpenerStatus();
  return { engine: 'js', reason: options.engine === 'js' ? 'chosen' : status.reason };
}

/** Whether decrypt with these options opens shards natively ('native' without the addon: an error). */
function useNative(options: DecryptOptions): boolean {
  const engine = options.engine ?? 'auto';
  if (engine === 'js') return false;
  const status = nativeOpenerStatus();
  if (engine === 'native' && !status.available) {
    throw new EdgeguardError(
      'EG_CONFIG',
      `the native shard opener is ${status.reason ?? 'unavailable'}; use the JavaScript engine (engine: 'js') or build it (npm run build:native).`,
    );
  }
  return status.available;
}

/**
 * A signature envelope: the statement, one digest per 1 MiB shard and the signatures, in base64.
 * 16 MiB holds the envelope of a package of some 100 GiB.
 */
const MAX_SIGNATURE_FILE_BYTES = 16 * 1024 * 1024;

export async function readSignatureFile(path: string): Promise<DsseEnvelope> {
  let text: string;
  try {
    text = await readBoundedText(path, MAX_SIGNATURE_FILE_BYTES, 'read the signature');
  } catch (e) {
    const err = fsError(e, path, 'read the signature');
    if (err.code === 'EG_NOT_FOUND') {
      throw new EdgeguardError(
        'EG_SIGNATURE_INVALID',
        `no signature at ${path}; a package is never used unsigned. Pass --sig if it lives elsewhere.`,
        { cause: e },
      );
    }
    throw err;
  }
  return parseEnvelope(text);
}
