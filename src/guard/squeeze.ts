/**
 * Feature squeezing (Xu, Evans, Qi, "Feature Squeezing: Detecting Adversarial Examples in Deep
 * Neural Networks", NDSS 2018, sections III and V): compare the model's softmax on the input with
 * its softmax on squeezed copies. Legitimate inputs barely move; adversarial perturbations, which
 * live in the bits and pixels a squeezer removes, move a lot.
 *
 *   - bit-depth reduction to b bits: x -> round(x * (2^b - 1)) / (2^b - 1)  (section III-A)
 *   - median smoothing with a k x k window, reflect padding               (section III-B)
 *   - score = max over squeezers of || softmax(x) - softmax(squeeze(x)) ||_1, in 0..2 (section V-A)
 *
 * Inputs are model tensors on the 0..1 scale, planar (NCHW without the batch dimension).
 */
import type { Classifier } from './classifier.ts';

export interface PlanarShape {
  channels: number;
  height: number;
  width: number;
}

/** Bit-depth reduction of every value to `bits` bits (values clamped to 0..1 first). */
export function reduceBitDepth(x: Float32Array, bits: number): Float32Array {
  if (!Number.isInteger(bits) || bits < 1 || bits > 16) throw new RangeError('bits must be an integer in 1..16');
  const levels = 2 ** bits - 1;
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const v = Math.min(1, Math.max(0, x[i]!));
    out[i] = Math.round(v * levels) / levels;
  }
  return out;
}

/** Reflect (d c b a | a b c d | d c b a) an index into 0..n-1. */
function reflect(i: number, n: number): number {
  const period = 2 * n;
  let m = ((i % period) + period) % period;
  if (m >= n) m = period - 1 - m;
  return m;
}

/** For every position 0..n-1, the k reflected indices its window covers (offsets -half .. k-1-half). */
function windowIndices(n: number, k: number): Int32Array {
  const half = Math.floor(k / 2);
  const out = new Int32Array(n * k);
  for (let i = 0; i < n; i++) for (let d = 0; d < k; d++) out[i * k + d] = reflect(i - half + d, n);
  return out;
}

/**
 * Sorts the first `n` values ascending in place (insertion sort: windows hold at most 81 values,
 * and per-pixel typed-array sort calls dominated the squeezer's time). NaN sorts last, as in
 * Float64Array.prototype.sort.
 */
function sortSmall(a: Float64Array, n: number): void {
  for (let i = 1; i < n; i++) {
    const v = a[i]!;
    let j = i - 1;
    while (j >= 0 && (a[j]! > v || (Number.isNaN(a[j]!) && !Number.isNaN(v)))) {
      a[j + 1] = a[j]!;
      j--;
    }
    a[j + 1] = v;
  }
}

/**
 * k x k median filter per channel with reflect padding. For even k the window is anchored as in
 * scipy.ndimage.median_filter (the paper's implementation): rows y - k/2 .. y + k/2 - 1, and the
 * value taken is the element of rank floor(k*k/2) (the upper median), so a 2x2 window looks at
 * (y-1..y, x-1..x) and returns the third smallest of its four values.
 */
export function medianFilter(x: Float32Array, shape: PlanarShape, k: number): Float32Array {
  const { channels: c, height: h, width: w } = shape;
  if (x.length !== c * h * w) throw new RangeError(`expected ${c * h * w} values, got ${x.length}`);
  if (!Number.isInteger(k) || k < 1 || k > 9) throw new RangeError('median window must be an integer in 1..9');
  if (k === 3 && !x.some(Number.isNaN)) return median3x3(x, shape);
  const out = new Float32Array(x.length);
  const rows = windowIndices(h, k);
  const cols = windowIndices(w, k);
  const window = new Float64Array(k * k);
  const rank = Math.floor((k * k) / 2);
  for (let ch = 0; ch < c; ch++) {
    const base = ch * h * w;
    for (let y = 0; y < h; y++) {
      for (let xx = 0; xx < w; xx++) {
        let n = 0;
        for (let dy = 0; dy < k; dy++) {
          const row = base + rows[y * k + dy]! * w;
          for (let dx = 0; dx < k; dx++) window[n++] = x[row + cols[xx * k + dx]!]!;
        }
        sortSmall(window, n);
        out[base + y * w + xx] = window[rank]!;
      }
    }
  }
  return out;
}

function min3(a: number, b: number, c: number): number {
  return a < b ? (a < c ? a : c) : b < c ? b : c;
}

function max3(a: number, b: number, c: number): number {
  return a > b ? (a > c ? a : c) : b > c ? b : c;
}

function med3(a: number, b: number, c: number): number {
  return a > b ? (b > c ? b : a > c ? c : a) : a > c ? a : b > c ? c : b;
}

/**
 * The 3x3 median without sorting: with every window column sorted (low, middle, high), the median
 * of the nine is the median of (the largest low, the median middle, the smallest high) (Paeth,
 * "Median finding on a 3x3 grid", Graphics Gems, 1990). Each column triple serves three windows.
 */
function median3x3(x: Float32Array, shape: PlanarShape): Float32Array {
  const { channels: c, height: h, width: w } = shape;
  const out = new Float32Array(x.length);
  const rows = windowIndices(h, 3);
  const cols = windowIndices(w, 3);
  const lo = new Float64Array(w);
  const mid = new Float64Array(w);
  const hi = new Float64Array(w);
  for (let ch = 0; ch < c; ch++) {
    const base = ch * h * w;
    for (let y = 0; y < h; y++) {
      const r0 = base + rows[y * 3]! * w;
      const r1 = base + rows[y * 3 + 1]! * w;
      const r2 = base + rows[y * 3 + 2]! * w;
      for (let i = 0; i < w; i++) {
        const a = x[r0 + i]!;
        const b = x[r1 + i]!;
        const d = x[r2 + i]!;
        lo[i] = min3(a, b, d);
        mid[i] = med3(a, b, d);
        hi[i] = max3(a, b, d);
      }
      for (let xx = 0; xx < w; xx++) {
        const i = cols[xx * 3]!;
        const j = cols[xx * 3 + 1]!;
        const l = cols[xx * 3 + 2]!;
        out[base + y * w + xx] = med3(
          max3(lo[i]!, lo[j]!, lo[l]!),
          med3(mid[i]!, mid[j]!, mid[l]!),
          min3(hi[i]!, hi[j]!, hi[l]!),
        );
      }
    }
  }
  return out;
}

export function l1Distance(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new RangeError('probability vectors differ in length');
  let d = 0;
  for (let i = 0; i < a.length; i++) d += Math.abs(a[i]! - b[i]!);
  return d;
}

export interface SqueezeSettings {
  bitDepth: number;
  medianSize: number;
}

export interface SqueezeScore {
  /** max of the two distances, 0..2. */
  score: number;
  bitDepth: number;
  median: number;
}

/** The joint squeezing score of `x`, given the classifier's probabilities on x itself. */
export async function squeezeScore(
  classify: Classifier,
  x: Float32Array,
  probabilities: ArrayLike<number>,
  shape: PlanarShape,
  s: SqueezeSettings,
): Promise<SqueezeScore> {
  const [pBits, pMedian] = await Promise.all([
    classify(reduceBitDepth(x, s.bitDepth)),
    classify(medianFilter(x, shape, s.medianSize)),
  ]);
  const bitDepth = l1Distance(probabilities, pBits);
  const median = l1Distance(probabilities, pMedian);
  return { score: Math.max(bitDepth, median), bitDepth, median };
}
