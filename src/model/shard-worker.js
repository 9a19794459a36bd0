// @ts-check
/**
 * A decryption worker of the JavaScript engine (started by chunk-opener.ts, without a loader).
 * It is started before the package's signature is checked: the first message brings the plan and
 * the key (only once the signature verified), every later one a shard to open into a slot of
 * shared memory. Only verdicts travel back.
 */
import { Buffer } from 'node:buffer';
import { parentPort } from 'node:worker_threads';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { createShardOpener } from './shard-core.js';

/**
 * @typedef {object} WorkerInit
 * @property {Omit<import('./shard-core.js').CorePlan, 'key' | 'prefix' | 'expected'>} plan
 * @property {SharedArrayBuffer} key
 * @property {SharedArrayBuffer} prefix
 * @property {Uint8Array | null} expected
 * @property {SharedArrayBuffer} slots
 * @property {number} slotBytes
 * @property {number} shardBytes
 * @property {boolean} discard
 * @property {number} gcEvery
 */

/**
 * Every Decipheriv.update() returns a fresh buffer. V8 collects them only once this isolate's
 * external memory has grown by some 64 MiB, so each worker would hold that much garbage at its
 * peak; a young-generation collection every `gcEvery` bytes (cheap: the heap is tiny) keeps it
 * small, and lets the allocator hand out the same, cache-warm memory again.
 * @returns {((o: { type: 'minor' }) => void) | null}
 */
function youngCollector() {
  try {
    setFlagsFromString('--expose-gc');
    return runInNewContext('gc');
  } catch {
    return null;
  }
}

if (!parentPort) throw new Error('shard-worker.js runs only as a worker thread');
const port = parentPort;
/** @type {WorkerInit | null} */
let init = null;
/** @type {import('./shard-core.js').ShardOpener | null} */
let opener = null;
/** @type {((o: { type: 'minor' }) => void) | null} */
let collect = null;
let sinceGc = 0;

port.on('message', (/** @type {{ init: WorkerInit } | { s: number, slot: number }} */ m) => {
  if ('init' in m) {
    init = m.init;
    opener = createShardOpener({
      ...init.plan,
      key: new Uint8Array(init.key),
      prefix: new Uint8Array(init.prefix),
      expected: init.expected,
    });
    collect = youngCollector();
    return;
  }
  if (!init || !opener) {
    port.postMessage({ s: m.s, slot: m.slot, r: { code: 'EG_INTERNAL', message: 'a shard arrived before the plan' } });
    return;
  }
  const out = init.discard ? null : Buffer.from(init.slots, m.slot * init.slotBytes, init.slotBytes);
  port.postMessage({ s: m.s, slot: m.slot, r: opener.open(m.s, out) });
  sinceGc += init.shardBytes;
  if (collect && sinceGc >= init.gcEvery) {
    sinceGc = 0;
    collect({ type: 'minor' });
  }
});
