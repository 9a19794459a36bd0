import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  computeStatistics,
  immerkaerNoise,
  laplacianVariance,
  luminance,
  type GuardImage,
} from '../../src/guard/index.ts';
import { loadMnist, mnistSplit, digitPixels, mulberry32 } from '../../scripts/lib/mnist-split.ts';

function grey(values: (i: number) => number, w = 28, h = 28, format = 'png'): GuardImage {
  const pixels = new Uint8Array(w * h);
  for (let i = 0; i < pixels.length; i++) pixels[i] = Math.max(0, Math.min(255, Math.round(values(i))));
  return { pixels, width: w, height: h, channels: 1, source: { format, width: w, height: h } };
}

function gaussian(rand: () => number): number {
  // Box-Muller
  return Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
}

test('a constant image has no contrast, noise, edges or entropy', () => {
  const s = computeStatistics(grey(() => 100));
  assert.equal(s.contrast, 0);
  assert.equal(s.noise, 0);
  assert.equal(s.blur, 0);
  assert.equal(s.entropy, 0);
  assert.equal(s.saturation, 0);
  assert.ok(Math.abs(s.brightness - 100 / 255) < 1e-9);
  assert.deepEqual([s.width, s.height, s.format], [28, 28, 'png']);
});

test('black is fully saturated; a half black, half white image has 1 bit of entropy and full contrast', () => {
  assert.equal(computeStatistics(grey(() => 0)).saturation, 1);
  const s = computeStatistics(grey((i) => (i % 2 === 0 ? 0 : 255)));
  assert.ok(Math.abs(s.entropy - 1) < 1e-12);
  assert.equal(s.contrast, 1);
  assert.equal(s.saturation, 1);
  assert.ok(Math.abs(s.brightness - 0.5) < 1e-9);
});

test("Immerkaer's estimator recovers the sigma of added Gaussian noise and ignores a linear ramp", () => {
  const w = 128;
  const h = 128;
  const ramp = immerkaerNoise(luminance(grey((i) => (i % w) + Math.floor(i / w) * 0.5, w, h)), w, h);
  assert.ok(ramp < 1e-9, `a linear ramp is not noise (got ${ramp})`);
  for (const sigma of [5, 20]) {
    const rand = mulberry32(sigma);
    const img = grey(() => 128 + sigma * gaussian(rand), w, h);
    const est = immerkaerNoise(luminance(img), w, h) * 255;
    assert.ok(Math.abs(est - sigma) / sigma < 0.1, `sigma ${sigma}: estimated ${est}`);
  }
});

test('variance of the Laplacian drops when a digit is blurred', () => {
  const data = loadMnist();
  const idx = mnistSplit().calibration[0]!;
  const px = digitPixels(data, idx);
  const sharpImg = grey((i) => px[i]! * 255);
  const blurred = new Float32Array(784);
  for (let y = 0; y < 28; y++)
    for (let x = 0; x < 28; x++) {
      let sum = 0;
      let n = 0;
      for (let dy = -2; dy <= 2; dy++)
        for (let dx = -2; dx <= 2; dx++) {
          const yy = y + dy;
          const xx = x + dx;
          if (yy >= 0 && yy < 28 && xx >= 0 && xx < 28) {
            sum += px[yy * 28 + xx]!;
            n++;
          }
        }
      blurred[y * 28 + x] = sum / n;
    }
  const a = laplacianVariance(luminance(sharpImg), 28, 28);
  const b = laplacianVariance(luminance(grey((i) => blurred[i]! * 255)), 28, 28);
  assert.ok(b < a / 4, `blurred ${b} vs sharp ${a}`);
});

test('colour pixels use BT.601 luma; the pixel count must match the dimensions', () => {
  const img: GuardImage = {
    pixels: Uint8Array.from([255, 0, 0, 0, 255, 0]),
    width: 2,
    height: 1,
    channels: 3,
    source: { format: 'png', width: 2, height: 1 },
  };
  const l = luminance(img);
  assert.ok(Math.abs(l[0]! - 0.299 * 255) < 1e-3 && Math.abs(l[1]! - 0.587 * 255) < 1e-3);
  assert.throws(() => luminance({ ...img, width: 3 }), RangeError);
});
