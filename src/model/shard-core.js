// @ts-check
/**
 * The JavaScript engine's per-shard routine: read, AEAD-open and hash one shard's chunks (the
 * construction of src/crypto/stream.ts; the contract of src/model/chunk-opener.ts). One module,
 * run by the decryption workers (shard-worker.js) and by the calling thread for small packages,
 * so both paths run the same code.
 *
 * It is plain JavaScript, type-checked through JSDoc (`@ts-check`), because worker threads start
 * without a loader: an inherited `--import tsx` would boot its hooks in every worker, and worker
 * start-up is the cost this engine is most sensitive to (see chunk-opener.ts).
 *
 * Node 20's Decipheriv allocates and copies on every update(); fed SLICE bytes at a time, the same
 * few hundred KiB are reused while still in the core's cache (docs/benchmarks.md, 2026-11-26).
 */
import { createDecipheriv, createHash } from 'node:crypto';
import { readSync } from 'node:fs';
import { Buffer } from 'node:buffer';

const TAG = 16;
const SLICE = 128 * 1024;

/**
 * @typedef {object} CorePlan What a shard opener needs: the shape of OpenPlan in chunk-opener.ts.
 * @property {number} fd package file descriptor (pread; owned by the caller)
 * @property {import('node:crypto').CipherGCMTypes | 'chacha20-poly1305'} suite
 * @property {Uint8Array} key per-file subkey (32 bytes)
 * @property {Uint8Array} prefix nonce prefix (7 bytes)
 * @property {Uint8Array} aad SHA-256 of the header
 * @property {number} headerBytes
 * @property {number} chunkSize
 * @property {number} plaintextLength
 * @property {number} chunks
 * @property {number} shardChunks
 * @property {Uint8Array | null | undefined} [expected] signed SHA-256 of each shard, 32 bytes each
 */

/**
 * @typedef {{ code: 'EG_TRUNCATED' | 'EG_TAMPERED', chunk: number }
 *   | { code: 'EG_DIGEST_MISMATCH', shard: number }
 *   | { code: 'EG_IO' | 'EG_INTERNAL', message: string }} OpenFailure
 */

/**
 * @typedef {object} ShardOpener
 * @property {(s: number, out: Buffer | null) => OpenFailure | null} open Open shard `s` into `out`
 *   (null: authenticate and hash only). Null when every chunk authenticated and the digest
 *   matched, else the failure; `out` is wiped on failure. A read error is a failure, not a throw.
 * @property {() => void} destroy Wipe the opener's buffers.
 */

/** @param {Uint8Array} b */
function wipe(b) {
  if (b.length > 0) b.fill(0);
}

/**
 * @param {CorePlan} p
 * @returns {ShardOpener}
 */
export function createShardOpener(p) {
  const readBuf = Buffer.alloc(p.chunkSize + TAG);
  const nonce = Buffer.alloc(12);
  nonce.set(p.prefix, 0);
  const key = Buffer.from(p.key.buffer, p.key.byteOffset, p.key.byteLength);
  const aad = Buffer.from(p.aad.buffer, p.aad.byteOffset, p.aad.byteLength);
  const expected = p.expected ? Buffer.from(p.expected.buffer, p.expected.byteOffset, p.expected.byteLength) : null;

  /** @param {number} at @param {number} want */
  function readChunk(at, want) {
    let got = 0;
    while (got < want) {
      const r = readSync(p.fd, readBuf, got, want - got, at + got);
      if (r === 0) break;
      got += r;
    }
    return got;
  }

  /** @param {number} s @param {Buffer | null} out @returns {OpenFailure | null} */
  function open(s, out) {
    const first = s * p.shardChunks;
    const end = Math.min(p.chunks, first + p.shardChunks);
    const hash = createHash('sha256');
    let pos = 0;
    /** @param {OpenFailure} f */
    const fail = (f) => {
      if (out) wipe(out.subarray(0, pos));
      return f;
    };
    for (let i = first; i < end; i++) {
      const want = Math.min(p.chunkSize, p.plaintextLength - i * p.chunkSize) + TAG;
      if (readChunk(p.headerBytes + i * (p.chunkSize + TAG), want) < want)
        return fail({ code: 'EG_TRUNCATED', chunk: i });
      const ctLen = want - TAG;
      // Nonce = prefix(7) || chunk index (32-bit BE) || last-chunk flag (src/crypto/stream.ts).
      nonce.writeUInt32BE(i, 7);
      nonce[11] = i === p.chunks - 1 ? 1 : 0;
      const d = /** @type {import('node:crypto').DecipherGCM} */ (
        createDecipheriv(/** @type {import('node:crypto').CipherGCMTypes} */ (p.suite), key, nonce, {
          authTagLength: TAG,
        })
      );
      d.setAAD(aad);
      d.setAuthTag(readBuf.subarray(ctLen, want));
      for (let off = 0; off < ctLen; off += SLICE) {
        const piece = d.update(readBuf.subarray(off, Math.min(ctLen, off + SLICE)));
        if (out) out.set(piece, pos);
        hash.update(piece);
        wipe(piece);
        pos += piece.length;
      }
      try {
        d.final();
      } catch {
        return fail({ code: 'EG_TAMPERED', chunk: i });
      }
    }
    const digest = hash.digest();
    if (expected && !digest.equals(expected.subarray(32 * s, 32 * s + 32)))
      return fail({ code: 'EG_DIGEST_MISMATCH', shard: s });
    return null;
  }

  return {
    open(s, out) {
      try {
        return open(s, out);
      } catch (e) {
        return { code: 'EG_IO', message: e instanceof Error ? e.message : String(e) };
      }
    },
    destroy() {
      wipe(readBuf);
      wipe(nonce);
    },
  };
}
