/**
 * The rate arithmetic of calibration (calibrate.ts): empirical quantiles and thresholds at a
 * false-positive rate, and the one-sided Clopper-Pearson upper bound that decides how many
 * held-out rejections a rate budget allows.
 */

/** Value at rank floor(q * (n - 1)) of ascending `sorted` (the lower empirical quantile). */
export function lowerQuantile(sorted: Float64Array, q: number): number {
  return sorted[Math.floor(q * (sorted.length - 1))]!;
}

/** Value at rank ceil((1 - q) * (n - 1)) of ascending `sorted` (the upper empirical quantile). */
export function upperQuantile(sorted: Float64Array, q: number): number {
  return sorted[Math.ceil((1 - q) * (sorted.length - 1))]!;
}

/**
 * threshold = sorted(scores)[ceil(N * (1 - fpr)) - 1]: at most fpr of the scores exceed it.
 * Computed as index N - 1 - floor(N * fpr), equal in exact arithmetic, because N * (1 - fpr) can
 * round down onto an integer and let one score too many above the threshold.
 */
export function thresholdAtFpr(scores: ArrayLike<number>, fpr: number): number {
  if (scores.length === 0) throw new RangeError('no scores');
  const sorted = Float64Array.from(scores).sort();
  const allowedAbove = Math.floor(sorted.length * fpr);
  const idx = Math.min(sorted.length - 1, Math.max(0, sorted.length - 1 - allowedAbove));
  return sorted[idx]!;
}

/** The value below which at most floor(N * rate) of `values` lie (flag when value < threshold). */
export function lowerThresholdAtRate(values: ArrayLike<number>, rate: number): number {
  if (values.length === 0) throw new RangeError('no values');
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * rate))]!;
}

/** ln P(X <= k) for X ~ Binomial(n, p), summed in log space. */
function logBinomialCdf(k: number, n: number, p: number): number {
  if (k >= n || p <= 0) return 0;
  if (p >= 1) return -Infinity;
  const lp = Math.log(p);
  const lq = Math.log1p(-p);
  let term = n * lq;
  let acc = term;
  for (let i = 0; i < k; i++) {
    term += Math.log(n - i) - Math.log(i + 1) + lp - lq;
    acc = acc > term ? acc + Math.log1p(Math.exp(term - acc)) : term + Math.log1p(Math.exp(acc - term));
  }
  return acc;
}

/**
 * One-sided Clopper-Pearson upper confidence bound on a rate after k events in n trials: the p
 * with P(Binomial(n, p) <= k) = 1 - level. Level 0 gives the point estimate k / n.
 */
export function rateUpperBound(k: number, n: number, level: number): number {
  if (!(n > 0) || k < 0 || k > n) throw new RangeError('need 0 <= k <= n, n > 0');
  if (level <= 0) return k / n;
  if (k === n) return 1;
  const target = Math.log(1 - level);
  let lo = k / n;
  let hi = 1;
  for (let i = 0; i < 60; i++) {
    const mid = (lo + hi) / 2;
    if (logBinomialCdf(k, n, mid) > target) lo = mid;
    else hi = mid;
  }
  return hi;
}

/** The largest count k out of n whose upper bound at `level` stays within `fpr` (-1: none does). */
export function allowedCount(n: number, fpr: number, level: number): number {
  let lo = -1;
  let hi = n;
  while (lo < hi) {
    const mid = Math.floor((lo + hi + 1) / 2); // > lo, so the loop ends
    if (rateUpperBound(mid, n, level) <= fpr) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}
