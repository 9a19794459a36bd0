import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createSha256Sink } from '../../src/crypto/index.ts';

const MIB = 1024 * 1024;
const sha = (parts: Uint8Array[]) => parts.reduce((h, p) => h.update(p), createHash('sha256')).digest();

// threshold 0 forces the worker (shared-memory ring of 1 MiB slots) whatever the size.
for (const [label, threshold] of [['worker', 0], ['inline', Number.MAX_SAFE_INTEGER]] as const) {
  test(`${label} sink: digest equals createHash over pieces that straddle, fill and exceed a slot`, async () => {
    const sizes = [0, 1, 31, MIB - 1, MIB, MIB + 1, 1, 3 * MIB + 17, 0, 5];
    const pieces = sizes.map((n) => randomBytes(n));
    const sink = createSha256Sink(0, threshold);
    try {
      for (const p of pieces) await sink.update(p);
      assert.deepEqual(await sink.digest(), sha(pieces));
    } finally {
      await sink.close();
    }
  });

  test(`${label} sink: the caller may wipe or reuse its buffer as soon as update() resolves`, async () => {
    const originals: Buffer[] = [];
    const buf = Buffer.alloc(MIB + 100);
    const sink = createSha256Sink(0, threshold);
    try {
      for (let i = 0; i < 12; i++) {
        // A view with an offset, as package-file passes subarrays of its read buffers.
        const view = buf.subarray(7, 7 + MIB + (i % 3) * 40);
        randomBytes(view.length).copy(view);
        originals.push(Buffer.from(view));
        await sink.update(view);
        buf.fill(0);
      }
      assert.deepEqual(await sink.digest(), sha(originals));
    } finally {
      await sink.close();
    }
  });

  test(`${label} sink: closing mid-stream (a chunk failed authentication) returns and later use fails`, async () => {
    const sink = createSha256Sink(0, threshold);
    for (let i = 0; i < 6; i++) await sink.update(randomBytes(MIB));
    await sink.close();
    if (label === 'worker') await assert.rejects(sink.update(Buffer.alloc(1)));
  });

  test(`${label} sink: an empty input gives the SHA-256 of nothing`, async () => {
    const sink = createSha256Sink(0, threshold);
    try {
      assert.equal((await sink.digest()).toString('hex'), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    } finally {
      await sink.close();
    }
  });
}
