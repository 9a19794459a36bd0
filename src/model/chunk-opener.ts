/**
 * Decrypting, authenticating and hashing a package's shards, on several cores: the JavaScript
 * engine. The native one (src/model/native-opener.ts, the default when built) keeps the same
 * contract, failure codes and order; this one is the reference and the fallback.
 *
 * A shard is a run of whole chunks (src/model/shards.ts). Opening shard s means, for each of its
 * chunks i: pread the sealed chunk, AEAD-open it with nonce(i, last) and the header digest as
 * associated data (the construction of src/crypto/stream.ts), and feed the plaintext to a SHA-256
 * of the shard; then compare that digest with the signed one. The plaintext lands in a slot of
 * shared memory and is handed to the caller only when every chunk of the shard authenticated and
 * the shard digest matched; on any failure the slot is wiped first.
 *
 * With `workers` > 0 (or `started`), worker threads open shards in parallel (each with its own read buffer and
 * cipher contexts) into a fixed set of slots, `slotsPerWorker` per worker plus one; the main thread
 * dispatches shard numbers and delivers finished shards strictly in order (and, while the workers
 * start, which takes tens of milliseconds, opens shards itself). A shard finished early waits in
 * its slot, so the reorder window, and the memory, is bounded by the slot count whatever the file
 * size. Failures are reported in shard order too: the error a caller sees is that of the first bad
 * shard, the same one a serial reader would hit. With `discard` (verify) no plaintext leaves the
 * opener at all: only the verdicts travel.
 *
 * The per-shard routine is one module (shard-core.js, plain JavaScript checked through JSDoc),
 * run by the workers (shard-worker.js) and, for small packages (where starting threads costs more
 * than it saves), on the calling thread, so both paths run the same code. Node 20's Decipheriv
 * allocates and copies on every update(); fed 128 KiB at a time and with the garbage those buffers
 * leave collected every 512 KiB (GC_EVERY_BYTES), the same few hundred KiB of memory are reused
 * while they are still in the core's cache. Against 256 KiB and 2 MiB, this cut the CPU of a
 * 256 MiB verify by 10-25% on the 2-CPU benchmark machine (docs/benchmarks.md, 2026-11-26).
 *
 * Workers can be started ahead (startOpenWorkers), while the caller reads and checks the signature:
 * booting a worker costs about 40 ms of CPU, all of it Node's own bootstrap (the worker loads only
 * shard-core.js and Node's own modules, with no loader). The key and plan reach them only in openShards.
 */
import { Worker } from 'node:worker_threads';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { EdgeguardError } from '../errors/index.ts';
import type { CipherSuite } from '../crypto/index.ts';
import { createShardOpener, type OpenFailure, type ShardOpener } from './shard-core.js';

export interface OpenPlan {
  /** The package file descriptor (pread from any thread); owned by the caller, open throughout. */
  fd: number;
  path: string;
  suite: CipherSuite;
  /** Per-file subkey (32) and nonce prefix (7): wiped by the caller afterwards. */
  key: Buffer;
  prefix: Buffer;
  /** SHA-256 of the header: the AEAD's associated data. */
  aad: Buffer;
  headerBytes: number;
  chunkSize: number;
  plaintextLength: number;
  chunks: number;
  shardChunks: number;
  shards: number;
  /** Signed SHA-256 of each shard (32 bytes each), or undefined to skip the comparison. */
  expected?: Buffer;
}

export type { OpenFailure };

export interface OpenOptions {
  /** Worker threads; 0 opens on the calling thread. */
  workers: number;
  slotsPerWorker?: number;
  /** Open shards on the calling thread too until the workers are up (default true). */
  helpWhileStarting?: boolean;
  /** Open shards on the calling thread too all along, not only while the workers start. */
  mainOpens?: boolean;
  /** Workers already started (startOpenWorkers); they replace `workers` and are terminated here. */
  started?: OpenWorkers;
  /** Authenticate and hash only: no plaintext leaves the opener; `deliver` gets an empty buffer. */
  discard?: boolean;
}

const WORKER_URL = new URL('./shard-worker.js', import.meta.url);

type WorkerResult = { s: number; slot: number; r: OpenFailure | null };

/**
 * Decryption worker threads, started ahead of use: a worker takes some 40 ms of CPU to boot
 * (Node's own bootstrap; the worker source loads nothing else), so a caller starts them before it
 * reads and verifies the signature and hands them to openShards. They hold no key until then.
 * `terminate` (idempotent) must be called whatever happens; openShards does it for the workers
 * it is given.
 */
export class OpenWorkers {
  readonly workers: Worker[] = [];
  readonly online: boolean[];
  ready = 0;
  failure: Error | undefined;
  private closing = false;
  private ended: Promise<unknown> | undefined;
  /** Set by openShards: called on every event (a worker up, a result, a failure). */
  onChange: () => void = () => {};
  onResult: (w: number, m: WorkerResult) => void = () => {};

  constructor(count: number) {
    this.online = new Array<boolean>(count).fill(false);
    for (let w = 0; w < count; w++) {
      // No loader: an inherited `--import tsx` would boot its hooks in every worker.
      const worker = new Worker(WORKER_URL, { execArgv: [] });
      worker.on('online', () => {
        this.online[w] = true;
        this.ready++;
        this.onChange();
      });
      worker.on('message', (m: WorkerResult) => this.onResult(w, m));
      worker.on('error', (e) => {
        this.failure ??= e;
        this.onChange();
      });
      worker.on('exit', (code) => {
        if (!this.closing) this.failure ??= new Error(`a decryption worker exited (code ${code})`);
        this.onChange();
      });
      this.workers.push(worker);
    }
  }

  get count(): number {
    return this.workers.length;
  }

  terminate(): Promise<unknown> {
    this.closing = true;
    this.ended ??= Promise.all(this.workers.map((w) => w.terminate()));
    return this.ended;
  }
}

/** Start `count` decryption workers now, for a later openShards (see OpenWorkers). */
export function startOpenWorkers(count: number): OpenWorkers {
  return new OpenWorkers(count);
}

const ZERO = Buffer.alloc(1);
const GC_EVERY_BYTES = 512 * 1024;

/**
 * A young-generation collection of this isolate, for the shards this thread opens itself (the same
 * garbage problem as in the workers). `--expose-gc` is a process-wide V8 flag that the workers set
 * anyway; a fresh context then carries a `gc` function bound to this isolate.
 */
type MinorGc = (o: { type: 'minor' }) => void;
let minorGc: MinorGc | null | undefined;
function collectYoung(): void {
  if (minorGc === undefined) {
    minorGc = null;
    const own = (globalThis as { gc?: unknown }).gc;
    try {
      if (typeof own === 'function') minorGc = own as MinorGc;
      else {
        setFlagsFromString('--expose-gc');
        minorGc = runInNewContext('gc') as MinorGc;
      }
    } catch {
      minorGc = null;
    }
  }
  minorGc?.({ type: 'minor' });
}
export const wipe = (b: Uint8Array) => {
  if (b.length > 0) Buffer.from(b.buffer, b.byteOffset, b.byteLength).fill(ZERO);
};

export function failureError(
  f: OpenFailure,
  plan: Pick<OpenPlan, 'chunks' | 'path' | 'plaintextLength' | 'chunkSize' | 'shardChunks'>,
): EdgeguardError {
  switch (f.code) {
    case 'EG_TAMPERED':
      return new EdgeguardError(
        'EG_TAMPERED',
        `chunk ${f.chunk} failed authentication; the file was modified or truncated.`,
        { details: { chunk: f.chunk } },
      );
    case 'EG_TRUNCATED':
      return new EdgeguardError(
        'EG_TRUNCATED',
        `the package ends inside chunk ${f.chunk} of ${plan.chunks}; the file was truncated.`,
        { details: { chunk: f.chunk } },
      );
    case 'EG_DIGEST_MISMATCH': {
      const start = f.shard * plan.shardChunks * plan.chunkSize;
      const end = Math.min(plan.plaintextLength, start + plan.shardChunks * plan.chunkSize);
      return new EdgeguardError(
        'EG_DIGEST_MISMATCH',
        `bytes ${start}-${end} of the decrypted model do not match the digest the publisher signed; it was re-encrypted by a holder of the content key. Do not use it.`,
        { details: { shard: f.shard } },
      );
    }
    case 'EG_IO':
      return new EdgeguardError('EG_IO', `could not read ${plan.path} (${f.message}).`);
    case 'EG_INTERNAL':
      return new EdgeguardError(
        'EG_INTERNAL',
        `decrypting ${plan.path} failed (${f.message}); nothing was released. Retry with EDGEGUARD_NATIVE=0, and report it.`,
      );
  }
}

/**
 * Open every shard and hand each one's plaintext to `deliver`, in order. The buffer is wiped when
 * `deliver` returns (or throws): copy what you keep. Throws the first failure in shard order.
 */
export async function openShards(
  plan: OpenPlan,
  deliver: (shard: number, plaintext: Buffer) => void | Promise<void>,
  o: OpenOptions,
): Promise<void> {
  const shardBytes = plan.shardChunks * plan.chunkSize;
  const inShard = (s: number) => Math.min(plan.plaintextLength - s * shardBytes, shardBytes);
  if (o.workers <= 0) {
    const opener = createShardOpener(plan);
    const slot = Buffer.alloc(o.discard ? 0 : shardBytes);
    try {
      for (let s = 0; s < plan.shards; s++) {
        const f = opener.open(s, o.discard ? null : slot);
        if (f) throw failureError(f, plan);
        try {
          await deliver(s, slot.subarray(0, o.discard ? 0 : inShard(s)));
        } finally {
          wipe(slot.subarray(0, o.discard ? 0 : inShard(s)));
        }
      }
    } finally {
      opener.destroy();
      wipe(slot);
    }
    return;
  }

  const pool = o.started ?? new OpenWorkers(o.workers);
  const perWorker = Math.max(1, o.slotsPerWorker ?? Math.min(3, Math.floor((12 * 1024 * 1024) / shardBytes)));
  // One slot more than the workers can hold, for the shard this thread opens itself.
  const slotCount = pool.count * perWorker + 1;
  const slotBytes = o.discard ? 0 : shardBytes;
  const slots = new SharedArrayBuffer(slotCount * slotBytes);
  const key = new SharedArrayBuffer(plan.key.length);
  const prefix = new SharedArrayBuffer(plan.prefix.length);
  const { expected } = plan;
  const free = Array.from({ length: slotCount }, (_, i) => i);
  const done = new Map<number, { slot: number; r: OpenFailure | null }>();
  const inflight = new Array<number>(pool.count).fill(0);
  let inline: ShardOpener | undefined;
  let helped = 0;
  let next = 0;
  let wake = () => {};
  let changed = new Promise<void>((r) => (wake = r));
  const { workers, online } = pool;
  try {
    Buffer.from(key).set(plan.key);
    Buffer.from(prefix).set(plan.prefix);
    const workerPlan = {
      fd: plan.fd,
      suite: plan.suite,
      aad: new Uint8Array(plan.aad),
      headerBytes: plan.headerBytes,
      chunkSize: plan.chunkSize,
      plaintextLength: plan.plaintextLength,
      chunks: plan.chunks,
      shardChunks: plan.shardChunks,
    };
    pool.onChange = () => wake();
    pool.onResult = (w, m) => {
      inflight[w]!--;
      done.set(m.s, { slot: m.slot, r: m.r });
      wake();
    };
    const init = {
      plan: workerPlan,
      key,
      prefix,
      expected: expected ? new Uint8Array(expected) : null,
      slots,
      slotBytes,
      shardBytes,
      discard: Boolean(o.discard),
      gcEvery: GC_EVERY_BYTES,
    };
    for (const worker of workers) worker.postMessage({ init });
    // This thread opens shards too: while the workers start (by default), or throughout.
    const help = () =>
      (o.mainOpens === true || (o.helpWhileStarting !== false && pool.ready < workers.length)) &&
      free.length > 0 &&
      next < plan.shards;
    for (let s = 0; s < plan.shards;) {
      // Hand shards, in order, to workers that are up and have room.
      for (;;) {
        if (free.length === 0 || next >= plan.shards) break;
        let w = -1;
        for (let i = 0; i < workers.length; i++)
          if (online[i] && inflight[i]! < perWorker && (w < 0 || inflight[i]! < inflight[w]!)) w = i;
        if (w < 0) break;
        inflight[w]!++;
        workers[w]!.postMessage({ s: next++, slot: free.shift()! });
      }
      const got = done.get(s);
      if (!got) {
        const failure = pool.failure;
        if (failure)
          throw new EdgeguardError('EG_INTERNAL', `decryption failed: ${failure.message}`, { cause: failure });
        if (help()) {
          // A worker takes tens of milliseconds to start: meanwhile (or throughout, with mainOpens)
          // this thread opens shards itself, yielding between shards so results get through.
          const slot = free.shift()!;
          inline ??= createShardOpener(plan);
          done.set(next, {
            slot,
            r: inline.open(next, o.discard ? null : Buffer.from(slots, slot * slotBytes, slotBytes)),
          });
          next++;
          helped += shardBytes;
          // Less often than in the workers: this isolate's young generation is bigger, so each costs more.
          if (helped % (4 * GC_EVERY_BYTES) < shardBytes) collectYoung();
          await new Promise<void>((r) => setImmediate(r));
          continue;
        }
        await changed;
        changed = new Promise<void>((r) => (wake = r));
        continue;
      }
      done.delete(s);
      const view = Buffer.from(slots, got.slot * slotBytes, o.discard ? 0 : inShard(s));
      try {
        if (got.r) throw failureError(got.r, plan);
        await deliver(s, view);
      } finally {
        wipe(view);
        free.push(got.slot);
      }
      s++;
    }
  } finally {
    inline?.destroy();
    await pool.terminate();
    wipe(new Uint8Array(slots));
    wipe(new Uint8Array(key));
    wipe(new Uint8Array(prefix));
  }
}
