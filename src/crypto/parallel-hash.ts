/**
 * SHA-256 on a second thread, so that decrypting (main thread) and hashing the plaintext overlap
 * on two cores.
 *
 * The bytes travel through a fixed ring of `slots` shared-memory slots (SharedArrayBuffer) and the
 * two threads coordinate with Atomics on a small shared control block, not with messages:
 *   - update() waits (Atomics.waitAsync, never blocking the event loop) until a slot is free,
 *     copies the piece into it, stores its length, advances `produced` and bumps `seq`;
 *   - the worker, a plain loop that parks in Atomics.wait on `seq` when there is nothing to do,
 *     hashes each produced slot in place, wipes it and advances `consumed` (the main thread
 *     pays for a futex wake-up only when the worker says it is parked);
 *   - digest() sets `state` to END; the worker, once it has consumed everything, writes the
 *     32-byte digest into shared memory and sets `state` to DIGEST.
 * Nothing is allocated per chunk on either thread (a structured-clone copy per chunk allocated a
 * fresh buffer in both isolates, and that garbage piled up towards V8's 64 MiB external-memory GC
 * trigger; a message per chunk also cost a wake-up through each event loop), so memory stays at
 * slots x slotBytes whatever the file size. Small inputs are hashed inline: starting a worker
 * costs more than it saves.
 */
import { createHash, type Hash } from 'node:crypto';
import { Worker } from 'node:worker_threads';

// Control block (Int32Array over a SharedArrayBuffer).
const SEQ = 0; // bumped by the main thread on every change the worker must see
const PRODUCED = 1; // pieces written by the main thread
const CONSUMED = 2; // pieces hashed (and wiped) by the worker
const STATE = 3; // RUNNING | END | DIGEST | SHUTDOWN
const PARKED = 4; // 1 while the worker is (about to be) parked in Atomics.wait
const LENGTHS = 5; // LENGTHS + slot: byte length of the piece in that slot
const RUNNING = 0;
const END = 1;
const DIGEST = 2;
const SHUTDOWN = 3;

// Atomics.waitAsync (ES2024; in Node since 16) is not in this project's ES2023 lib typings.
type WaitAsyncResult = { async: false; value: 'not-equal' | 'timed-out' } | { async: true; value: Promise<'ok' | 'timed-out'> };
const waitAsync = (Atomics as unknown as { waitAsync: (ta: Int32Array, index: number, value: number) => WaitAsyncResult }).waitAsync.bind(Atomics);

// Zeroing shared memory with fill(0) takes V8's element-wise path (about 7 GB/s here); filling
// with a one-byte buffer goes through Node's memset (over 50 GB/s).
const ZERO = Buffer.alloc(1);

const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { ring, control, digestOut, slots, slotBytes } = workerData;
const [SEQ, PRODUCED, CONSUMED, STATE, PARKED, LENGTHS, END, DIGEST, SHUTDOWN] = [${SEQ}, ${PRODUCED}, ${CONSUMED}, ${STATE}, ${PARKED}, ${LENGTHS}, ${END}, ${DIGEST}, ${SHUTDOWN}];
const ctl = new Int32Array(control);
const out = Buffer.from(digestOut);
const ZERO = Buffer.alloc(1);
let hash = createHash('sha256');
let consumed = 0;
for (;;) {
  const seq = Atomics.load(ctl, SEQ);
  if (Atomics.load(ctl, PRODUCED) !== consumed) {
    const slot = consumed % slots;
    const view = Buffer.from(ring, slot * slotBytes, Atomics.load(ctl, LENGTHS + slot));
    hash.update(view);
    view.fill(ZERO);
    consumed++;
    Atomics.store(ctl, CONSUMED, consumed);
    Atomics.notify(ctl, CONSUMED);
    continue;
  }
  const state = Atomics.load(ctl, STATE);
  if (state === SHUTDOWN) break;
  if (state === END && Atomics.load(ctl, PRODUCED) === consumed) {
    hash.digest().copy(out);
    hash = createHash('sha256');
    Atomics.store(ctl, STATE, DIGEST);
    Atomics.notify(ctl, STATE);
    continue;
  }
  // Announce the nap, then sleep unless seq moved meanwhile (sequentially consistent Atomics: the
  // main thread either sees PARKED and notifies, or bumped seq before this wait reads it).
  Atomics.store(ctl, PARKED, 1);
  Atomics.wait(ctl, SEQ, seq);
  Atomics.store(ctl, PARKED, 0);
}
`;

export interface Sha256Sink {
  update(bytes: Uint8Array): Promise<void>;
  digest(): Promise<Buffer>;
  close(): Promise<void>;
}

export function createSha256Sink(expectedBytes: number, threshold = 16 * 1024 * 1024): Sha256Sink {
  return expectedBytes >= threshold ? new WorkerSha256() : new InlineSha256();
}

class InlineSha256 implements Sha256Sink {
  private readonly hash: Hash = createHash('sha256');
  async update(bytes: Uint8Array): Promise<void> {
    this.hash.update(bytes);
  }
  async digest(): Promise<Buffer> {
    return this.hash.digest();
  }
  async close(): Promise<void> {}
}

class WorkerSha256 implements Sha256Sink {
  private readonly ring: SharedArrayBuffer;
  private readonly ctl: Int32Array;
  private readonly digestOut: SharedArrayBuffer;
  private readonly worker: Worker;
  private produced = 0;
  private failure: Error | undefined;

  constructor(
    private readonly slots = 4,
    private readonly slotBytes = 1024 * 1024,
  ) {
    this.ring = new SharedArrayBuffer(slots * slotBytes);
    const control = new SharedArrayBuffer((LENGTHS + slots) * 4);
    this.ctl = new Int32Array(control);
    this.digestOut = new SharedArrayBuffer(32);
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { ring: this.ring, control, digestOut: this.digestOut, slots, slotBytes } });
    const fail = (e: Error) => {
      this.failure ??= e;
      // Wake anything parked in waitAsync; the loops below then see the failure.
      Atomics.notify(this.ctl, CONSUMED);
      Atomics.notify(this.ctl, STATE);
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => fail(new Error(`the SHA-256 worker exited (code ${code})`)));
  }

  /** Tell the worker something changed; the futex wake-up is paid only when it is parked. */
  private signal(): void {
    Atomics.add(this.ctl, SEQ, 1);
    if (Atomics.load(this.ctl, PARKED) === 1) Atomics.notify(this.ctl, SEQ);
  }

  /** Resolve once ctl[index] is no longer `value` (or the worker failed). */
  private async changed(index: number, value: number): Promise<void> {
    const w = waitAsync(this.ctl, index, value);
    if (w.async) await w.value;
  }

  async update(bytes: Uint8Array): Promise<void> {
    for (let off = 0; off < bytes.length; off += this.slotBytes) {
      for (;;) {
        if (this.failure) throw this.failure;
        const consumed = Atomics.load(this.ctl, CONSUMED);
        if (this.produced - consumed < this.slots) break;
        await this.changed(CONSUMED, consumed);
      }
      const piece = bytes.subarray(off, Math.min(bytes.length, off + this.slotBytes));
      const slot = this.produced % this.slots;
      Buffer.from(this.ring, slot * this.slotBytes, piece.length).set(piece);
      Atomics.store(this.ctl, LENGTHS + slot, piece.length);
      this.produced++;
      Atomics.store(this.ctl, PRODUCED, this.produced);
      this.signal();
    }
  }

  async digest(): Promise<Buffer> {
    Atomics.store(this.ctl, STATE, END);
    this.signal();
    for (;;) {
      if (this.failure) throw this.failure;
      const state = Atomics.load(this.ctl, STATE);
      if (state === DIGEST) break;
      await this.changed(STATE, state);
    }
    const digest = Buffer.from(new Uint8Array(this.digestOut)); // a copy, off shared memory
    Atomics.store(this.ctl, STATE, RUNNING);
    return digest;
  }

  async close(): Promise<void> {
    Atomics.store(this.ctl, STATE, SHUTDOWN);
    this.signal();
    this.failure ??= new Error('the SHA-256 sink is closed');
    await this.worker.terminate();
    // The worker wipes each slot once hashed; this covers slots it never reached (early failure).
    Buffer.from(this.ring).fill(ZERO);
  }
}
