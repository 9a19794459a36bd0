import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { l1Distance, medianFilter, reduceBitDepth } from '../../src/guard/index.ts';

test('1-bit depth reduction rounds to 0 or 1; 3 bits keeps 8 levels', () => {
  assert.deepEqual(
    Array.from(reduceBitDepth(Float32Array.from([0, 0.3, 0.49, 0.51, 0.7, 1, -2, 3]), 1)),
    [0, 0, 0, 1, 1, 1, 0, 1],
  );
  const three = reduceBitDepth(Float32Array.from([0.2]), 3);
  assert.ok(Math.abs(three[0]! - 1 / 7) < 1e-7);
  assert.throws(() => reduceBitDepth(new Float32Array(1), 0), RangeError);
});

test('2x2 median: window (y-1..y, x-1..x) with reflect padding, upper median of four', () => {
  // 3x3 plane
  // 1 2 3
  // 4 5 6
  // 7 8 9
  const x = Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9]);
  const m = medianFilter(x, { channels: 1, height: 3, width: 3 }, 2);
  // (0,0): window rows {0(reflected -1), 0}, cols {0, 0} -> [1,1,1,1] -> 1
  // (1,1): {1,2,4,5} sorted -> 1,2,4,5 -> rank 2 -> 4
  // (2,2): {5,6,8,9} -> 8
  // (0,2): rows {0,0} cols {1,2} -> {2,3,2,3} -> 3
  assert.deepEqual(Array.from(m), [1, 2, 3, 4, 4, 5, 7, 7, 8]);
});

test('median filtering keeps constant planes and works per channel', () => {
  fc.assert(
    fc.property(fc.float({ min: 0, max: 1, noNaN: true }), fc.float({ min: 0, max: 1, noNaN: true }), (a, b) => {
      const x = new Float32Array(2 * 4 * 5);
      x.fill(a, 0, 20);
      x.fill(b, 20);
      const m = medianFilter(x, { channels: 2, height: 4, width: 5 }, 2);
      return m.slice(0, 20).every((v) => v === Math.fround(a)) && m.slice(20).every((v) => v === Math.fround(b));
    }),
  );
  assert.throws(() => medianFilter(new Float32Array(5), { channels: 1, height: 2, width: 2 }, 2), RangeError);
});

/** The filter as first written: a typed-array sort of every window (the reference). */
function referenceMedian(x: Float32Array, h: number, w: number, k: number): Float32Array {
  const reflect = (i: number, n: number) => {
    const m = (((i % (2 * n)) + 2 * n) % (2 * n)) as number;
    return m >= n ? 2 * n - 1 - m : m;
  };
  const out = new Float32Array(x.length);
  const half = Math.floor(k / 2);
  for (let y = 0; y < h; y++)
    for (let xx = 0; xx < w; xx++) {
      const win = new Float64Array(k * k);
      let n = 0;
      for (let dy = 0; dy < k; dy++)
        for (let dx = 0; dx < k; dx++) win[n++] = x[reflect(y - half + dy, h) * w + reflect(xx - half + dx, w)]!;
      win.sort();
      out[y * w + xx] = win[Math.floor((k * k) / 2)]!;
    }
  return out;
}

test('property: the median filter equals a plain sort of every reflected window, for every size', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 7 }),
      fc.integer({ min: 1, max: 7 }),
      fc.integer({ min: 1, max: 9 }),
      fc.array(fc.float({ noDefaultInfinity: false }), { minLength: 49, maxLength: 49 }),
      (h, w, k, values) => {
        const x = Float32Array.from(values.slice(0, h * w));
        const got = medianFilter(x, { channels: 1, height: h, width: w }, k);
        const want = referenceMedian(x, h, w, k);
        return got.every((v, i) => v === want[i] || (Number.isNaN(v) && Number.isNaN(want[i]!)));
      },
    ),
  );
});

test('property: the 3x3 median without sorting (Paeth) equals the plain sort', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 9 }),
      fc.integer({ min: 1, max: 9 }),
      fc.array(fc.float({ noNaN: true }), { minLength: 81, maxLength: 81 }),
      (h, w, values) => {
        const x = Float32Array.from(values.slice(0, h * w));
        const got = medianFilter(x, { channels: 1, height: h, width: w }, 3);
        const want = referenceMedian(x, h, w, 3);
        return got.every((v, i) => v === want[i]);
      },
    ),
  );
});

test('L1 distance between probability vectors lies in 0..2', () => {
  assert.equal(l1Distance([1, 0], [0, 1]), 2);
  assert.equal(l1Distance([0.5, 0.5], [0.5, 0.5]), 0);
  assert.throws(() => l1Distance([1], [0.5, 0.5]), RangeError);
});

test('property: 1-bit reduction (its own fast path) equals the general rounding rule, NaN and infinities included', () => {
  fc.assert(
    fc.property(fc.array(fc.float(), { maxLength: 64 }), (values) => {
      const x = Float32Array.from(values);
      const got = reduceBitDepth(x, 1);
      return got.every((v, i) => {
        const want = Math.round(Math.min(1, Math.max(0, x[i]!)));
        return v === want || (Number.isNaN(v) && Number.isNaN(want));
      });
    }),
  );
});

test('property: the 3x3 median on mostly-zero planes (digit-like margins) equals the plain sort', () => {
  const value = fc.oneof(
    { weight: 6, arbitrary: fc.constant(0) },
    { weight: 1, arbitrary: fc.float({ noNaN: true, min: -2, max: 2 }) },
  );
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 12 }),
      fc.integer({ min: 1, max: 12 }),
      fc.array(value, { minLength: 144, maxLength: 144 }),
      (h, w, values) => {
        const x = Float32Array.from(values.slice(0, h * w));
        const got = medianFilter(x, { channels: 1, height: h, width: w }, 3, new Float32Array(h * w).fill(7));
        const want = referenceMedian(x, h, w, 3);
        return got.every((v, i) => v === want[i]);
      },
    ),
  );
});
