/**
 * How the decryption engines spread work over threads. The defaults (package-file.ts) are measured
 * choices, not settings for users: no public option carries them. Tests and benchmarks drive one
 * particular path (worker threads only, the calling thread throughout, one native job at a time)
 * by running a call inside `withEngineTuning`, which scopes the tuning to that call's async
 * context; nothing else can change it. Not exported from src/model/index.ts.
 */
import { AsyncLocalStorage } from 'node:async_hooks';

export interface EngineTuning {
  /** JavaScript engine: worker threads for a large package (default: the CPUs, at most 4). */
  workers?: number;
  /** JavaScript engine: plaintext size from which workers are used (default 8 MiB). */
  parallelFrom?: number;
  /** JavaScript engine: the calling thread opens shards while the workers start (default true). */
  helpWhileStarting?: boolean;
  /** JavaScript engine: the calling thread opens shards all along (default false). */
  mainOpens?: boolean;
  /** Native engine: shards opened at once (default: twice the CPUs, at most libuv's pool size). */
  inflight?: number;
}

const scope = new AsyncLocalStorage<EngineTuning>();

/** Run `fn` with `tuning` in force for every package operation it makes. */
export function withEngineTuning<T>(tuning: EngineTuning, fn: () => T): T {
  return scope.run({ ...tuning }, fn);
}

/** The tuning in force here (empty: the defaults). */
export function engineTuning(): EngineTuning {
  return scope.getStore() ?? {};
}
