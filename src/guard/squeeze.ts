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

/** Bit-depth reduction of every value to `bits` bits (values clamped to 0..1 first), into `out` if given. */
export function reduceBitDepth(x: Float32Array, bits: number, out = new Float32Array(x.length)): Float32Array {
  if (!Number.isInteger(bits) || bits < 1 || bits > 16) throw new RangeError('bits must be an integer in 1..16');
  if (out.length !== x.length) throw new RangeError(`expected room for ${x.length} values, got ${out.length}`);
  if (bits === 1) {
    // The same values as the general rule below: clamped and rounded, 0.5 up, NaN kept.
    for (let i = 0; i < x.length; i++) {
      const v = x[i]!;
      out[i] = v >= 0.5 ? 1 : v < 0.5 ? 0 : NaN;
    }
    return out;
  }
  const levels = 2 ** bits - 1;
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
 * (y-1..y, x-1..x) and returns the third smallest of its four values. Written into `out` if given.
 */
export function medianFilter(
  x: Float32Array,
  shape: PlanarShape,
  k: number,
  out = new Float32Array(x.length),
): Float32Array {
  const { channels: c, height: h, width: w } = shape;
  if (x.length !== c * h * w) throw new RangeError(`expected ${c * h * w} values, got ${x.length}`);
  if (out.length !== x.length) throw new RangeError(`expected room for ${x.length} values, got ${out.length}`);
  if (!Number.isInteger(k) || k < 1 || k > 9) throw new RangeError('median window must be an integer in 1..9');
  if (k === 3 && !hasNaN(x)) return median3x3(x, shape, out);
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

function med3(a: number, b: number, c: number): number {
  return a > b ? (b > c ? b : a > c ? c : a) : a > c ? a : b > c ? c : b;
}

function hasNaN(x: Float32Array): boolean {
  for (let i = 0; i < x.length; i++) if (x[i] !== x[i]) return true;
  return false;
}

/**
 * The 3x3 median without sorting: with every window column sorted (low, middle, high), the median
 * of the nine is the median of (the largest low, the median middle, the smallest high) (Paeth,
 * "Median finding on a 3x3 grid", Graphics Gems, 1990). Each column triple serves three windows.
 * Reflect padding for a window of 3 repeats the edge row or column (index -1 is 0, n is n-1).
 */
function median3x3(x: Float32Array, shape: PlanarShape, out: Float32Array): Float32Array {
  const { channels: c, height: h, width: w } = shape;
  const lo = new Float64Array(w);
  const mid = new Float64Array(w);
  const hi = new Float64Array(w);
  for (let ch = 0; ch < c; ch++) {
    const base = ch * h * w;
    for (let y = 0; y < h; y++) {
      const r1 = base + y * w;
      const r0 = y === 0 ? r1 : r1 - w;
      const r2 = y === h - 1 ? r1 : r1 + w;
      // Columns whose three values are all 0 (the margins of a digit): a window of three of them has median 0.
      let first = w;
      let last = -1;
      for (let i = 0; i < w; i++) {
        const a = x[r0 + i]!;
        const b = x[r1 + i]!;
        const d = x[r2 + i]!;
        if (a !== 0 || b !== 0 || d !== 0) {
          if (first === w) first = i;
          last = i;
        }
        sortColumn(a, b, d, i, lo, mid, hi);
      }
      const from = Math.max(0, first - 1);
      const to = Math.min(w, last + 2);
      if (from >= to) {
        out.fill(0, r1, r1 + w);
        continue;
      }
      out.fill(0, r1, r1 + from);
      out.fill(0, r1 + to, r1 + w);
      for (let xx = from; xx < to; xx++) {
        const i = xx === 0 ? 0 : xx - 1;
        const k = xx === w - 1 ? xx : xx + 1;
        const l0 = lo[i]!;
        const l1 = lo[xx]!;
        const l2 = lo[k]!;
        const u0 = hi[i]!;
        const u1 = hi[xx]!;
        const u2 = hi[k]!;
        const largestLow = l0 > l1 ? (l0 > l2 ? l0 : l2) : l1 > l2 ? l1 : l2;
        const smallestHigh = u0 < u1 ? (u0 < u2 ? u0 : u2) : u1 < u2 ? u1 : u2;
        out[r1 + xx] = med3(largestLow, med3(mid[i]!, mid[xx]!, mid[k]!), smallestHigh);
      }
    }
  }
  return out;
}

/** Sorts one column triple (a, b, d) into lo[i] <= mid[i] <= hi[i]. */
function sortColumn(
  a: number,
  b: number,
  d: number,
  i: number,
  lo: Float64Array,
  mid: Float64Array,
  hi: Float64Array,
): void {
  const small = a < b ? a : b;
  const large = a < b ? b : a;
  lo[i] = small < d ? small : d;
  hi[i] = large > d ? large : d;
  mid[i] = d < small ? small : d > large ? large : d;
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

/**
 * `x` followed by its two squeezed copies (bit-depth reduced, median filtered), back to back in
 * one buffer: the batch the primary classifies in one run.
 */
export function withSqueezedCopies(x: Float32Array, shape: PlanarShape, s: SqueezeSettings): Float32Array {
  const n = x.length;
  const all = new Float32Array(3 * n);
  all.set(x);
  reduceBitDepth(x, s.bitDepth, all.subarray(n, 2 * n));
  medianFilter(x, shape, s.medianSize, all.subarray(2 * n));
  return all;
}

/** The squeezing score from the classifier's probabilities on x and on its two squeezed copies. */
export function squeezeDistances(
  probabilities: ArrayLike<number>,
  pBits: ArrayLike<number>,
  pMedian: ArrayLike<number>,
): SqueezeScore {
  const bitDepth = l1Distance(probabilities, pBits);
  const median = l1Distance(probabilities, pMedian);
  return { score: Math.max(bitDepth, median), bitDepth, median };
}

/** The joint squeezing score of `x`, given the classifier's probabilities on x itself. */
export async function squeezeScore(
  classify: Classifier,
  x: Float32Array,
  probabilities: ArrayLike<number>,
  shape: PlanarShape,
  s: SqueezeSettings,
): Promise<SqueezeScore> {
  const n = x.length;
  const copies = withSqueezedCopies(x, shape, s).subarray(n);
  const [pBits, pMedian] = classify.batch
    ? await classify.batch(copies, 2)
    : await Promise.all([classify(copies.subarray(0, n)), classify(copies.subarray(n))]);
  return squeezeDistances(probabilities, pBits!, pMedian!);
}
