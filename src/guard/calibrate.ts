/**
 * Calibration: learn the profile from legitimate inputs only, at a chosen false-positive rate.
 *
 * Validation bounds. Each statistic gets [quantile(t), quantile(1 - t)] of its calibration
 * values, with the same tail mass t for every statistic. The fraction of calibration inputs
 * outside at least one bound grows with t; t is the largest value (found by bisection) for which
 * that joint rejection rate stays at or below the target FPR. Each statistic thus keeps its own,
 * possibly asymmetric, range while the stage as a whole meets the target.
 *
 * Squeezing threshold (Xu et al., NDSS 2018, section V-A): the score of every calibration input;
 * threshold = sorted(scores)[ceil(N * (1 - fpr)) - 1], so at most fpr of them exceed it.
 */
import { EdgeguardError } from '../errors/index.ts';
import { argmax, type Classifier } from './classifier.ts';
import { PROFILE_KIND, PROFILE_VERSION, validateStatistics, type GuardProfile } from './profile.ts';
import { squeezeScore, type PlanarShape, type SqueezeSettings } from './squeeze.ts';
import { NUMERIC_STATISTICS, type InputStatistics, type NumericStatistic } from './stats.ts';

export interface CalibrationSample {
  stats: InputStatistics;
  /** The model input for this sample (needed for squeezing, confidence and ensemble rates). */
  tensor?: Float32Array;
}

export interface CalibrateOptions {
  samples: CalibrationSample[];
  /** Target false-positive rate of the validation stage (0..1, exclusive). */
  fpr: number;
  /** Target false-positive rate of the squeezing detector; defaults to `fpr`. */
  squeezeFpr?: number;
  primary?: Classifier;
  ensemble?: Classifier;
  shape?: PlanarShape;
  squeeze?: SqueezeSettings;
  confidenceThreshold?: number;
  model?: GuardProfile['model'];
  /** Called after each sample with model work, for progress bars. */
  onProgress?: (done: number, total: number) => void;
}

export const MIN_CALIBRATION_SAMPLES = 20;

/** Value at rank floor(q * (n - 1)) of ascending `sorted` (the lower empirical quantile). */
function lowerQuantile(sorted: Float64Array, q: number): number {
  return sorted[Math.floor(q * (sorted.length - 1))]!;
}

function upperQuantile(sorted: Float64Array, q: number): number {
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

function checkFpr(fpr: number, what: string): void {
  if (!(fpr > 0 && fpr < 1)) throw new EdgeguardError('EG_USAGE', `${what} must be a rate between 0 and 1 (exclusive), e.g. 0.05; got ${fpr}.`);
}

type Bounds = Record<NumericStatistic, { min: number; max: number }>;

function boundsAt(sorted: Record<NumericStatistic, Float64Array>, tail: number): Bounds {
  const out = {} as Bounds;
  for (const s of NUMERIC_STATISTICS) out[s] = { min: lowerQuantile(sorted[s], tail), max: upperQuantile(sorted[s], tail) };
  return out;
}

function rejectionRate(samples: CalibrationSample[], bounds: Bounds): number {
  let rejected = 0;
  for (const { stats } of samples) {
    for (const s of NUMERIC_STATISTICS) {
      const v = stats[s];
      if (v < bounds[s].min || v > bounds[s].max) {
        rejected++;
        break;
      }
    }
  }
  return rejected / samples.length;
}

/** Learn the whole profile (validation bounds, and with a model the squeezing threshold). */
export async function calibrateProfile(o: CalibrateOptions): Promise<GuardProfile> {
  const n = o.samples.length;
  if (n < MIN_CALIBRATION_SAMPLES) {
    throw new EdgeguardError('EG_USAGE', `calibration needs at least ${MIN_CALIBRATION_SAMPLES} legitimate inputs; got ${n}. Add more images.`);
  }
  checkFpr(o.fpr, '--fpr');
  const squeezeFpr = o.squeezeFpr ?? o.fpr;
  checkFpr(squeezeFpr, '--squeeze-fpr');
  for (const { stats } of o.samples) {
    for (const s of NUMERIC_STATISTICS) {
      if (!Number.isFinite(stats[s])) throw new EdgeguardError('EG_INPUT', `a calibration input has a non-finite ${s} statistic.`);
    }
  }
  const sorted = {} as Record<NumericStatistic, Float64Array>;
  for (const s of NUMERIC_STATISTICS) sorted[s] = Float64Array.from(o.samples.map((x) => x.stats[s])).sort();

  // Bisection on the tail mass: rejectionRate(boundsAt(t)) is non-decreasing in t.
  let lo = 0;
  let hi = 0.5;
  for (let i = 0; i < 50; i++) {
    const mid = (lo + hi) / 2;
    if (rejectionRate(o.samples, boundsAt(sorted, mid)) <= o.fpr) lo = mid;
    else hi = mid;
  }
  const tail = lo;
  const statistics = boundsAt(sorted, tail);
  const widths = o.samples.map((x) => x.stats.width);
  const heights = o.samples.map((x) => x.stats.height);
  const formats = [...new Set(o.samples.map((x) => x.stats.format))].sort();

  const profile: GuardProfile = {
    kind: PROFILE_KIND,
    version: PROFILE_VERSION,
    createdAt: new Date().toISOString(),
    ...(o.model ? { model: o.model } : {}),
    samples: n,
    validation: {
      fpr: o.fpr,
      tail,
      statistics,
      dimensions: { minWidth: Math.min(...widths), maxWidth: Math.max(...widths), minHeight: Math.min(...heights), maxHeight: Math.max(...heights) },
      formats,
      measuredFpr: 0,
    },
  };
  profile.validation.measuredFpr = o.samples.filter((x) => !validateStatistics(x.stats, profile).passed).length / n;

  if (o.primary) {
    if (!o.shape || !o.squeeze) throw new EdgeguardError('EG_USAGE', 'squeezing calibration needs the model input shape and squeezer settings.');
    const scores: number[] = [];
    let lowConfidence = 0;
    let disagreements = 0;
    const threshold = o.confidenceThreshold ?? 0.85;
    for (let i = 0; i < n; i++) {
      const t = o.samples[i]!.tensor;
      if (!t) throw new EdgeguardError('EG_USAGE', 'squeezing calibration needs the model input of every sample.');
      const p = await o.primary(t);
      const top = argmax(p);
      if (p[top]! < threshold) lowConfidence++;
      scores.push((await squeezeScore(o.primary, t, p, o.shape, o.squeeze)).score);
      if (o.ensemble && argmax(await o.ensemble(t)) !== top) disagreements++;
      o.onProgress?.(i + 1, n);
    }
    const thr = thresholdAtFpr(scores, squeezeFpr);
    profile.squeeze = {
      fpr: squeezeFpr,
      bitDepth: o.squeeze.bitDepth,
      medianSize: o.squeeze.medianSize,
      threshold: thr,
      measuredFpr: scores.filter((s) => s > thr).length / n,
    };
    profile.observed = {
      confidenceThreshold: threshold,
      lowConfidenceRate: lowConfidence / n,
      ...(o.ensemble ? { ensembleDisagreementRate: disagreements / n } : {}),
    };
  }
  return profile;
}
