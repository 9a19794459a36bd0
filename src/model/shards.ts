/**
 * Shards of the plaintext model, as OpenSSF Model Signing (OMS) v1.0's "shards" serialization
 * lays them out for one file: consecutive byte ranges [start, end) of `shardSize` bytes (the last
 * one shorter), each named "FILE:START:END" (decimal offsets) and hashed with SHA-256 on its own.
 *
 * edgeguard's shards are whole groups of chunks (shardSize is a multiple of the chunk size), so a
 * shard can be decrypted, authenticated and hashed independently of every other shard: on several
 * cores at once. An empty model has one empty shard "FILE:0:0" (SHA-256 of nothing).
 */
import { EdgeguardError } from '../errors/index.ts';

/** Shards are at least this big (whole chunks), so the signed list stays small for small chunks. */
export const MIN_SHARD_BYTES = 64 * 1024;

export function defaultShardSize(chunkSize: number): number {
  return chunkSize * Math.max(1, Math.ceil(MIN_SHARD_BYTES / chunkSize));
}

export function checkShardSize(shardSize: number, chunkSize: number): void {
  if (!Number.isSafeInteger(shardSize) || shardSize <= 0 || shardSize % chunkSize !== 0) {
    throw new EdgeguardError(
      'EG_USAGE',
      `shard size must be a positive multiple of the chunk size (${chunkSize} bytes).`,
    );
  }
}

export function shardCount(plaintextLength: number, shardSize: number): number {
  return Math.max(1, Math.ceil(plaintextLength / shardSize));
}

export function shardRange(index: number, plaintextLength: number, shardSize: number): { start: number; end: number } {
  const start = index * shardSize;
  return { start, end: Math.min(plaintextLength, start + shardSize) };
}

/** The OMS resource name of shard `index`. */
export function shardName(file: string, index: number, plaintextLength: number, shardSize: number): string {
  const { start, end } = shardRange(index, plaintextLength, shardSize);
  return `${file}:${start}:${end}`;
}

/** OMS's algorithm name for a shard digest: the hash name, "-sharded-", the shard size. */
export function shardAlgorithm(shardSize: number): string {
  return `sha256-sharded-${shardSize}`;
}

/** The signed shard digests a verifier checks each decrypted shard against. */
export interface SignedShards {
  shardSize: number;
  /** Shard i's SHA-256 at bytes [32 i, 32 i + 32). */
  digests: Buffer;
}
