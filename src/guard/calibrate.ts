/**
 * Calibration: learn the profile from legitimate inputs only, at a chosen false-positive rate.
 *
 * Pipeline mode (the default with a model): `fpr` is the budget of the whole default pipeline,
 * the share of legitimate inputs that validation, confidence, ensemble and squeezing together
 * may reject or flag. Every stage gets its threshold at one common per-stage rate a (validation:
 * the tail bisection described below, at target a; confidence: the a-quantile of the top probability; ensemble:
 * the (1-a)-quantile of the L1 distance between the two models' probabilities; squeezing: the
 * (1-a)-quantile of its score). Fitting 15 thresholds (12 statistic bounds and 3 scores) on the
 * same inputs they are judged on is optimistic (about 1/(N+1) per threshold), so a is chosen on
 * K-fold cross-validated counts: thresholds fitted on K-1 folds, the held-out fold counted. a is
 * the largest rate (bisection) whose cross-validated count k keeps the one-sided Clopper-Pearson
 * upper bound on the rate, at level `fprConfidence` (default 0.95), within `fpr`; the final
 * thresholds are then fitted on all inputs at a.
 *
 * Stage mode (`pipeline: false`, and always without a model) is what follows: each stage on its own.
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
import { DEFAULT_CONFIDENCE_THRESHOLD } from './config.ts';
import {
  combinedScore,
  componentValues,
  fitCombinerTables,
  COMBINED_MODEL_COMPONENTS,
  type CombinerTables,
  type ComponentName,
  type ComponentValues,
} from './combiner.ts';
import { PROFILE_KIND, PROFILE_VERSION, validateStatistics, type GuardProfile } from './profile.ts';
import { l1Distance, squeezeScore, type PlanarShape, type SqueezeSettings } from './squeeze.ts';
import {
  allowedCount,
  lowerQuantile,
  lowerThresholdAtRate,
  rateUpperBound,
  thresholdAtFpr,
  upperQuantile,
} from './rates.ts';
import { NUMERIC_STATISTICS, type InputStatistics, type NumericStatistic } from './stats.ts';

export interface CalibrationSample {
  stats: InputStatistics;
  /** The model input for this sample (needed for squeezing, confidence and ensemble rates). */
  tensor?: Float32Array;
}

export interface CalibrateOptions {
  samples: CalibrationSample[];
  /**
   * Target false-positive rate (0..1, exclusive): of the whole pipeline in pipeline mode, of the
   * validation stage in stage mode.
   */
  fpr: number;
  /** Stage mode only: target false-positive rate of the squeezing detector; defaults to `fpr`. */
  squeezeFpr?: number;
  primary?: Classifier;
  ensemble?: Classifier;
  shape?: PlanarShape;
  squeeze?: SqueezeSettings;
  /** The confidence threshold whose rate is recorded in `observed` (default 0.85). */
  confidenceThreshold?: number;
  /** Calibrate the whole pipeline to `fpr` (default: true when a primary model is given). */
  pipeline?: boolean;
  /** Level of the upper confidence bound the pipeline budget is met at (0 = the point estimate; default 0.95). */
  fprConfidence?: number;
  /** Folds of the cross-validation (default 5). */
  folds?: number;
  /**
   * Pipeline mode: also fit the calibrated combiner (combiner.ts) to the same budget, written as
   * a version-3 profile, which the guard then decides with (default true).
   */
  combiner?: boolean;
  model?: GuardProfile['model'];
  /** Called after each sample with model work, for progress bars. */
  onProgress?: (done: number, total: number) => void;
}

export const MIN_CALIBRATION_SAMPLES = 20;

function checkFpr(fpr: number, what: string): void {
  if (!(fpr > 0 && fpr < 1))
    throw new EdgeguardError('EG_USAGE', `${what} must be a rate between 0 and 1 (exclusive), e.g. 0.05; got ${fpr}.`);
}

type Bounds = Record<NumericStatistic, { min: number; max: number }>;

function boundsAt(sorted: Record<NumericStatistic, Float64Array>, tail: number): Bounds {
  const out = {} as Bounds;
  for (const s of NUMERIC_STATISTICS)
    out[s] = { min: lowerQuantile(sorted[s], tail), max: upperQuantile(sorted[s], tail) };
  return out;
}

function outside(stats: InputStatistics, bounds: Bounds): boolean {
  for (const s of NUMERIC_STATISTICS) {
    const v = stats[s];
    if (!(v >= bounds[s].min && v <= bounds[s].max)) return true;
  }
  return false;
}

function rejectionRate(stats: InputStatistics[], bounds: Bounds): number {
  let rejected = 0;
  for (const x of stats) if (outside(x, bounds)) rejected++;
  return rejected / stats.length;
}

/** Per-statistic bounds with a common tail mass, the largest whose joint rejection rate is <= fpr. */
function fitValidation(stats: InputStatistics[], fpr: number): { tail: number; statistics: Bounds } {
  const sorted = {} as Record<NumericStatistic, Float64Array>;
  for (const s of NUMERIC_STATISTICS) sorted[s] = Float64Array.from(stats.map((x) => x[s])).sort();
  // Bisection on the tail mass: rejectionRate(boundsAt(t)) is non-decreasing in t.
  let lo = 0;
  let hi = 0.5;
  for (let i = 0; i < 50; i++) {
    const mid = (lo + hi) / 2;
    if (rejectionRate(stats, boundsAt(sorted, mid)) <= fpr) lo = mid;
    else hi = mid;
  }
  return { tail: lo, statistics: boundsAt(sorted, lo) };
}

/** Per-sample scores of the model stages, computed once. */
interface ModelScores {
  confidence: Float64Array;
  /** L1 distance between the primary's and the ensemble's probabilities. */
  ensemble?: Float64Array;
  squeeze: Float64Array;
  /** The two squeezers' distances apart (the combiner's components). */
  squeezeBits: Float64Array;
  squeezeMedian: Float64Array;
}

interface StageThresholds {
  validation: {
    tail: number;
    statistics: Bounds;
    minWidth: number;
    maxWidth: number;
    minHeight: number;
    maxHeight: number;
    formats: Set<string>;
  };
  confidence: number;
  ensemble?: number;
  squeeze: number;
}

function fitStages(idx: number[], samples: CalibrationSample[], m: ModelScores, rate: number): StageThresholds {
  const stats = idx.map((i) => samples[i]!.stats);
  const pick = (a: Float64Array) => idx.map((i) => a[i]!);
  return {
    validation: {
      ...fitValidation(stats, rate),
      minWidth: stats.reduce((m, x) => Math.min(m, x.width), Infinity),
      maxWidth: stats.reduce((m, x) => Math.max(m, x.width), 0),
      minHeight: stats.reduce((m, x) => Math.min(m, x.height), Infinity),
      maxHeight: stats.reduce((m, x) => Math.max(m, x.height), 0),
      formats: new Set(stats.map((x) => x.format)),
    },
    confidence: lowerThresholdAtRate(pick(m.confidence), rate),
    ...(m.ensemble ? { ensemble: thresholdAtFpr(pick(m.ensemble), rate) } : {}),
    squeeze: thresholdAtFpr(pick(m.squeeze), rate),
  };
}

/** Whether sample i is rejected or flagged by at least one stage, exactly as the Guard decides. */
function firesAny(i: number, samples: CalibrationSample[], m: ModelScores, t: StageThresholds): boolean {
  const x = samples[i]!.stats;
  const v = t.validation;
  if (
    outside(x, v.statistics) ||
    x.width < v.minWidth ||
    x.width > v.maxWidth ||
    x.height < v.minHeight ||
    x.height > v.maxHeight ||
    !v.formats.has(x.format)
  )
    return true;
  if (m.confidence[i]! < t.confidence) return true;
  if (m.ensemble && t.ensemble !== undefined && m.ensemble[i]! > t.ensemble) return true;
  return m.squeeze[i]! > t.squeeze;
}

/** Number of samples fired on when each fold is judged by thresholds fitted on the other folds. */
function crossValidatedCount(samples: CalibrationSample[], m: ModelScores, rate: number, folds: number): number {
  let count = 0;
  for (let f = 0; f < folds; f++) {
    const train: number[] = [];
    const held: number[] = [];
    for (let i = 0; i < samples.length; i++) (i % folds === f ? held : train).push(i);
    const t = fitStages(train, samples, m, rate);
    for (const i of held) if (firesAny(i, samples, m, t)) count++;
  }
  return count;
}

/** The combiner's inputs per sample: six statistics and the model scores computed in calibration. */
function combinerSamples(samples: CalibrationSample[], m: ModelScores): ComponentValues[] {
  return samples.map((x, i) =>
    componentValues(x.stats, {
      squeezeBits: m.squeezeBits[i]!,
      squeezeMedian: m.squeezeMedian[i]!,
      ...(m.ensemble ? { ensemble: m.ensemble[i]! } : {}),
    }),
  );
}

/** Whether an input's source size or format lies outside those of the given calibration inputs. */
function unseenSource(x: InputStatistics, seen: InputStatistics[]): boolean {
  const w = seen.map((s) => s.width);
  const h = seen.map((s) => s.height);
  return (
    x.width < Math.min(...w) ||
    x.width > Math.max(...w) ||
    x.height < Math.min(...h) ||
    x.height > Math.max(...h) ||
    !seen.some((s) => s.format === x.format)
  );
}

type CombinerSection = NonNullable<GuardProfile['combiner']>;

/**
 * The combiner's threshold for a budget: every fold's held-out inputs are scored with tables fitted
 * on the other folds; the threshold is the (k+1)-th largest of these held-out scores, k the largest
 * count whose Clopper-Pearson bound at `level` stays within `fpr`, so at most k held-out inputs
 * exceed it. The final tables are fitted on all inputs (the same engineering rule as the per-stage
 * pipeline: the cross-validated count stands for the rate on new inputs).
 */
function calibrateCombiner(
  samples: CalibrationSample[],
  m: ModelScores,
  fpr: number,
  level: number,
  folds: number,
): CombinerSection {
  const n = samples.length;
  const values = combinerSamples(samples, m);
  const components: ComponentName[] = [
    ...NUMERIC_STATISTICS,
    ...COMBINED_MODEL_COMPONENTS.filter((c) => values[0]![c] !== undefined),
  ];
  const heldOut = new Float64Array(n);
  for (let f = 0; f < folds; f++) {
    const train: number[] = [];
    for (let i = 0; i < n; i++) if (i % folds !== f) train.push(i);
    const tables = fitCombinerTables(
      train.map((i) => values[i]!),
      components,
    );
    const seen = train.map((i) => samples[i]!.stats);
    for (let i = f; i < n; i += folds)
      heldOut[i] = unseenSource(samples[i]!.stats, seen) ? Infinity : combinedScore(tables, values[i]!).score;
  }
  const k = Math.max(0, allowedCount(n, fpr, level));
  const descending = Float64Array.from(heldOut).sort().reverse();
  const threshold = Math.min(descending[Math.min(k, n - 1)]!, Number.MAX_VALUE);
  const tables = fitCombinerTables(values, components);
  const cv = heldOut.filter((x) => x > threshold).length;
  const inSample = values.filter((v) => combinedScore(tables, v).score > threshold).length;
  return {
    method: 'fisher',
    threshold,
    crossValidatedFpr: cv / n,
    upperBound: rateUpperBound(cv, n, level),
    measuredFpr: inSample / n,
    components: tables as CombinerTables,
  };
}

/** Learn the whole profile (validation bounds, and with a model the squeezing threshold). */
export async function calibrateProfile(o: CalibrateOptions): Promise<GuardProfile> {
  const n = o.samples.length;
  if (n < MIN_CALIBRATION_SAMPLES) {
    throw new EdgeguardError(
      'EG_USAGE',
      `calibration needs at least ${MIN_CALIBRATION_SAMPLES} legitimate inputs; got ${n}. Add more images.`,
    );
  }
  checkFpr(o.fpr, '--fpr');
  const pipeline = o.pipeline ?? Boolean(o.primary);
  if (pipeline && !o.primary)
    throw new EdgeguardError('EG_USAGE', 'calibrating the whole pipeline needs the primary model.');
  if (pipeline && o.squeezeFpr !== undefined)
    throw new EdgeguardError(
      'EG_USAGE',
      '--squeeze-fpr sets a per-stage rate; with a pipeline budget (--fpr) the stages share it. Use --per-stage to set stage rates.',
    );
  const squeezeFpr = o.squeezeFpr ?? o.fpr;
  checkFpr(squeezeFpr, '--squeeze-fpr');
  const level = o.fprConfidence ?? 0.95;
  if (!(level >= 0 && level < 1))
    throw new EdgeguardError('EG_USAGE', `--fpr-confidence must be in [0, 1), e.g. 0.95; got ${level}.`);
  const folds = o.folds ?? 5;
  if (!(Number.isInteger(folds) && folds >= 2 && folds <= 100))
    throw new EdgeguardError('EG_USAGE', `folds must be an integer in 2..100; got ${folds}.`);
  for (const { stats } of o.samples) {
    for (const s of NUMERIC_STATISTICS) {
      if (!Number.isFinite(stats[s]))
        throw new EdgeguardError('EG_INPUT', `a calibration input has a non-finite ${s} statistic.`);
    }
  }

  // Model scores of every sample (and the informational rates at the fixed 0.85 / argmax rules).
  let scores: ModelScores | undefined;
  let observed: GuardProfile['observed'];
  if (o.primary) {
    if (!o.shape || !o.squeeze)
      throw new EdgeguardError('EG_USAGE', 'squeezing calibration needs the model input shape and squeezer settings.');
    const m: ModelScores = {
      confidence: new Float64Array(n),
      squeeze: new Float64Array(n),
      squeezeBits: new Float64Array(n),
      squeezeMedian: new Float64Array(n),
      ...(o.ensemble ? { ensemble: new Float64Array(n) } : {}),
    };
    let lowConfidence = 0;
    let disagreements = 0;
    const threshold = o.confidenceThreshold ?? DEFAULT_CONFIDENCE_THRESHOLD;
    for (let i = 0; i < n; i++) {
      const t = o.samples[i]!.tensor;
      if (!t) throw new EdgeguardError('EG_USAGE', 'squeezing calibration needs the model input of every sample.');
      const p = await o.primary(t);
      const top = argmax(p);
      m.confidence[i] = p[top]!;
      if (p[top]! < threshold) lowConfidence++;
      const sq = await squeezeScore(o.primary, t, p, o.shape, o.squeeze);
      m.squeeze[i] = sq.score;
      m.squeezeBits[i] = sq.bitDepth;
      m.squeezeMedian[i] = sq.median;
      if (o.ensemble) {
        const q = await o.ensemble(t);
        m.ensemble![i] = l1Distance(p, q);
        if (argmax(q) !== top) disagreements++;
      }
      o.onProgress?.(i + 1, n);
    }
    scores = m;
    observed = {
      confidenceThreshold: threshold,
      lowConfidenceRate: lowConfidence / n,
      ...(o.ensemble ? { ensembleDisagreementRate: disagreements / n } : {}),
    };
  }

  // The per-stage rates: one shared rate for the pipeline, or the requested ones.
  let validationRate = o.fpr;
  let squeezeRate = squeezeFpr;
  let pipelineSection: GuardProfile['pipeline'];
  let final: StageThresholds | undefined;
  if (pipeline && scores) {
    const k = Math.max(0, allowedCount(n, o.fpr, level));
    const kFolds = Math.min(folds, n);
    let lo = 0;
    let hi = Math.min(0.5, o.fpr);
    for (let i = 0; i < 30; i++) {
      const mid = (lo + hi) / 2;
      if (crossValidatedCount(o.samples, scores, mid, kFolds) <= k) lo = mid;
      else hi = mid;
    }
    const cv = crossValidatedCount(o.samples, scores, lo, kFolds);
    final = fitStages(
      Array.from({ length: n }, (_, i) => i),
      o.samples,
      scores,
      lo,
    );
    let inSample = 0;
    for (let i = 0; i < n; i++) if (firesAny(i, o.samples, scores, final)) inSample++;
    validationRate = lo;
    squeezeRate = lo;
    pipelineSection = {
      fpr: o.fpr,
      fprConfidence: level,
      folds: kFolds,
      stageRate: lo,
      confidenceThreshold: final.confidence,
      ...(final.ensemble !== undefined ? { ensembleThreshold: final.ensemble } : {}),
      crossValidatedFpr: cv / n,
      upperBound: rateUpperBound(cv, n, level),
      measuredFpr: inSample / n,
    };
  }

  const { tail, statistics } =
    final?.validation ??
    fitValidation(
      o.samples.map((x) => x.stats),
      validationRate,
    );
  const widths = o.samples.map((x) => x.stats.width);
  const heights = o.samples.map((x) => x.stats.height);
  const formats = [...new Set(o.samples.map((x) => x.stats.format))].sort();

  const profile: GuardProfile = {
    kind: PROFILE_KIND,
    // Version 2 with a pipeline section (3 once the combiner is added below); a per-stage profile stays version 1.
    version: pipelineSection ? 2 : 1,
    createdAt: new Date().toISOString(),
    ...(o.model ? { model: o.model } : {}),
    samples: n,
    validation: {
      fpr: validationRate,
      tail,
      statistics,
      dimensions: {
        minWidth: Math.min(...widths),
        maxWidth: Math.max(...widths),
        minHeight: Math.min(...heights),
        maxHeight: Math.max(...heights),
      },
      formats,
      measuredFpr: 0,
    },
  };
  profile.validation.measuredFpr = o.samples.filter((x) => !validateStatistics(x.stats, profile).passed).length / n;

  if (scores && o.squeeze) {
    const thr = final?.squeeze ?? thresholdAtFpr(scores.squeeze, squeezeRate);
    profile.squeeze = {
      fpr: squeezeRate,
      bitDepth: o.squeeze.bitDepth,
      medianSize: o.squeeze.medianSize,
      threshold: thr,
      measuredFpr: scores.squeeze.filter((s) => s > thr).length / n,
    };
    profile.observed = observed;
  }
  if (pipelineSection) profile.pipeline = pipelineSection;
  if (pipelineSection && scores && (o.combiner ?? true)) {
    profile.version = PROFILE_VERSION;
    profile.combiner = calibrateCombiner(o.samples, scores, o.fpr, level, pipelineSection.folds);
  }
  return profile;
}
