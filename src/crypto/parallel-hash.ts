/**
 * SHA-256 on a second thread, so that decrypting (main thread) and hashing the plaintext overlap
 * on two cores. Chunks are copied to the worker and wiped there once hashed; at most
 * `maxInFlight` chunks are queued, which keeps memory constant whatever the file size.
 * Small inputs are hashed inline: starting a worker costs more than it saves.
 */
import { createHash, type Hash } from 'node:crypto';
import { Worker } from 'node:worker_threads';

const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
let hash = createHash('sha256');
parentPort.on('message', (m) => {
  if (m.type === 'data') { hash.update(m.bytes); m.bytes.fill(0); parentPort.postMessage({ type: 'ack' }); }
  else if (m.type === 'end') { parentPort.postMessage({ type: 'digest', digest: hash.digest() }); hash = createHash('sha256'); }
});
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
  private readonly worker = new Worker(WORKER_SOURCE, { eval: true });
  private inFlight = 0;
  private waiters: Array<() => void> = [];
  private digestWaiter: ((d: Buffer) => void) | undefined;
  private failure: Error | undefined;

  constructor(private readonly maxInFlight = 4) {
    this.worker.on('message', (m: { type: string; digest?: Uint8Array }) => {
      if (m.type === 'ack') {
        this.inFlight--;
        this.waiters.shift()?.();
      } else if (m.type === 'digest' && m.digest) {
        this.digestWaiter?.(Buffer.from(m.digest));
      }
    });
    this.worker.on('error', (e) => {
      this.failure = e;
      for (const w of this.waiters.splice(0)) w();
    });
  }

  async update(bytes: Uint8Array): Promise<void> {
    while (this.inFlight >= this.maxInFlight && !this.failure) await new Promise<void>((r) => this.waiters.push(r));
    if (this.failure) throw this.failure;
    this.inFlight++;
    this.worker.postMessage({ type: 'data', bytes });
  }

  async digest(): Promise<Buffer> {
    if (this.failure) throw this.failure;
    const p = new Promise<Buffer>((resolve) => (this.digestWaiter = resolve));
    this.worker.postMessage({ type: 'end' });
    return p;
  }

  async close(): Promise<void> {
    await this.worker.terminate();
  }
}
