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
 * EDGEGUARD_NATIVE=0, the JavaScript path (workers) does the same work, and the tests run both.
 */
import { createRequire } from 'node:module';
import type { OpenFailure, OpenPlan } from './chunk-opener.ts';

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
    const reason = missing ? 'not built (run `npm run build:native`)' : `failed to load: ${e instanceof Error ? e.message : String(e)}`;
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
