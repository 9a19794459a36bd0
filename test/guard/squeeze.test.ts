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

test('L1 distance between probability vectors lies in 0..2', () => {
  assert.equal(l1Distance([1, 0], [0, 1]), 2);
  assert.equal(l1Distance([0.5, 0.5], [0.5, 0.5]), 0);
  assert.throws(() => l1Distance([1], [0.5, 0.5]), RangeError);
});
