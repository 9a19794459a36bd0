/**
 * The native shard opener (native/shard_open.c, built by `npm install` through node-gyp into
 * build/Release/edgeguard_native.node): the same per-shard work as CORE in chunk-opener.ts,
 * decrypt in place, authenticate, SHA-256, compare with the signed digest, done by OpenSSL's EVP
 * interface (the OpenSSL inside the running node binary) on libuv's thread pool, into buffers the
 * caller owns. No worker isolate to boot and no allocation per update: on the 2-CPU benchmark
 * machine it took verify+decrypt from about half of the SHA-256 limit to over it
 * (docs/benchmarks.md).
 *
 * It is an accelerator: when the addon is not built (no compiler on the device) or
 * EDGEGUARD_NATIVE=0, the JavaScript path (chunk-opener.ts, workers) does the same work, and the
 * tests run both. This file loads the addon and drives it (openShardsNative, with the same
 * contract as openShards there).
 */
import { createRequire } from 'node:module';
import { EdgeguardError } from '../errors/index.ts';
import { failureError, wipe, type OpenFailure, type OpenPlan } from './chunk-opener.ts';

/** The addon's functions (see the comment at the top of native/shard_open.c). */
export interface NativeBinding {
  create(plan: Omit<OpenPlan, 'path' | 'shards' | 'expected'> & { expected: Buffer | null }): NativeOpenerHandle;
  /**
   * Open shard s into out (>= shard bytes + 16), or with out null verify it only (in a per-thread
   * scratch buffer); wipeAfter: wipe out even on success.
   */
  open(handle: NativeOpenerHandle, s: number, out: Buffer | null, wipeAfter: boolean): Promise<OpenFailure | null>;
  /** Cleanse the key; no open() may be pending. */
  destroy(handle: NativeOpenerHandle): void;
}
declare const handleBrand: unique symbol;
export type NativeOpenerHandle = { readonly [handleBrand]: true };

export interface NativeStatus {
  available: boolean;
  /** Why it is not available (not built, turned off, failed to load). */
  reason?: string;
}

const ADDON = '../../build/Release/edgeguard_native.node';
let loaded: { binding: NativeBinding | null; status: NativeStatus } | undefined;

function load(): { binding: NativeBinding | null; status: NativeStatus } {
  if (loaded) return loaded;
  if (process.env.EDGEGUARD_NATIVE === '0') {
    loaded = { binding: null, status: { available: false, reason: 'turned off (EDGEGUARD_NATIVE=0)' } };
    return loaded;
  }
  try {
    const binding = createRequire(import.meta.url)(ADDON) as NativeBinding;
    loaded = { binding, status: { available: true } };
  } catch (e) {
    const missing = (e as { code?: string }).code === 'MODULE_NOT_FOUND';
    const reason = missing
      ? 'not built (run `npm run build:native`)'
      : `failed to load: ${e instanceof Error ? e.message : String(e)}`;
    loaded = { binding: null, status: { available: false, reason } };
  }
  return loaded;
}

/** The native binding, or null when it is not built or turned off. */
export function nativeBinding(): NativeBinding | null {
  return load().binding;
}

/** Whether the native shard opener is in use, and if not, why (for `edgeguard doctor`-style output). */
export function nativeOpenerStatus(): NativeStatus {
  return load().status;
}

const EMPTY = Buffer.alloc(0);
/** Verification: how many shards per job may finish ahead of the one awaited. */
const RUN_AHEAD = 8;

export interface NativeOpenOptions {
  /** Shards being opened at once on libuv's pool. */
  inflight: number;
  /** Authenticate and hash only: `deliver` gets an empty buffer and the plaintext is wiped at once. */
  discard?: boolean;
}

/** binding.create, its argument errors (a bug of ours, never the file's) as a typed error. */
function createNative(
  binding: NativeBinding,
  plan: Parameters<NativeBinding['create']>[0],
): ReturnType<NativeBinding['create']> {
  try {
    return binding.create(plan);
  } catch (e) {
    throw new EdgeguardError(
      'EG_INTERNAL',
      `the native shard opener refused its plan (${e instanceof Error ? e.message : String(e)}); retry with EDGEGUARD_NATIVE=0, and report it.`,
      { cause: e },
    );
  }
}

/**
 * openShards through the native opener (src/model/native-opener.ts): each shard is one job on
 * libuv's thread pool, decrypting in place into one of this thread's slot buffers. Results are
 * delivered, and failures thrown, strictly in shard order, exactly as openShards does.
 *
 * Memory: with plaintext to hand out there are `inflight + 1` slots (one more than the jobs, so the
 * pool stays busy while a finished shard is delivered) and a slot is reused once its shard has been
 * delivered; with `discard` the addon needs no slot at all (it verifies in 64 KiB per pool thread)
 * and a new job starts as soon as one ends, at most RUN_AHEAD shards past the one awaited. Either
 * way the memory does not grow with the file.
 */
export async function openShardsNative(
  binding: NativeBinding,
  plan: OpenPlan,
  deliver: (shard: number, plaintext: Buffer) => void | Promise<void>,
  o: NativeOpenOptions,
): Promise<void> {
  const shardBytes = plan.shardChunks * plan.chunkSize;
  const inShard = (s: number) => Math.min(plan.plaintextLength - s * shardBytes, shardBytes);
  const discard = Boolean(o.discard);
  const jobs = Math.max(1, o.inflight);
  // With discard, jobs need no slot (the addon verifies in a small scratch buffer per thread): the
  // "slots" only count jobs in flight.
  const slots = Array.from({ length: Math.min(plan.shards, discard ? jobs : jobs + 1) }, () =>
    discard ? null : Buffer.alloc(shardBytes + 16),
  );
  const free = slots.map((_, i) => i);
  const results = new Map<number, Promise<OpenFailure | null>>();
  const slotOf = new Map<number, number>();
  const handle = createNative(binding, {
    fd: plan.fd,
    suite: plan.suite,
    key: plan.key,
    prefix: plan.prefix,
    aad: plan.aad,
    headerBytes: plan.headerBytes,
    chunkSize: plan.chunkSize,
    plaintextLength: plan.plaintextLength,
    chunks: plan.chunks,
    shardChunks: plan.shardChunks,
    expected: plan.expected ?? null,
  });
  let next = 0;
  let cursor = 0;
  let stopped = false;
  // Queue shards while there are free slots; with discard a finished job frees its slot and queues the next.
  const pump = () => {
    while (!stopped && free.length > 0 && next < plan.shards && next < cursor + RUN_AHEAD * jobs) {
      const slot = free.shift()!;
      const n = next++;
      slotOf.set(n, slot);
      const ended = (r: OpenFailure | null) => {
        if (discard) {
          free.push(slot);
          pump();
        }
        return r;
      };
      results.set(
        n,
        binding
          .open(handle, n, slots[slot] ?? null, false)
          .then(ended, (e: unknown) =>
            ended({ code: 'EG_INTERNAL', message: e instanceof Error ? e.message : String(e) }),
          ),
      );
    }
  };
  try {
    pump();
    for (let s = 0; s < plan.shards; s++) {
      cursor = s;
      pump();
      const r = await results.get(s)!;
      results.delete(s);
      const slot = slotOf.get(s)!;
      slotOf.delete(s);
      const view = discard ? EMPTY : slots[slot]!.subarray(0, inShard(s));
      try {
        if (r) throw failureError(r, plan);
        await deliver(s, view);
      } finally {
        if (!discard) {
          wipe(view);
          free.push(slot);
        }
      }
    }
  } finally {
    // Jobs still running write into the slots and read the key: let them end first.
    stopped = true;
    await Promise.all(results.values());
    binding.destroy(handle);
    for (const b of slots) if (b) wipe(b);
  }
}
