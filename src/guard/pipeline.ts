/**
 * The guard pipeline for one model: input validation against the calibrated profile, then the
 * primary model, its confidence, an ensemble member of another architecture, and feature
 * squeezing. Verdicts:
 *
 *   - reject: the input is statistically unlike the legitimate inputs (validation failed); no
 *     answer is given.
 *   - flag: the input passed validation but a model-side detector fired (low confidence, ensemble
 *     disagreement, squeezing distance over threshold); the answer comes from the fallback model
 *     (the ensemble member unless another is given) and the caller sends the input to review.
 *   - accept: nothing fired; the answer is the primary model's.
 *
 * Thresholds: the configuration's, else the profile's calibrated ones (a version-2 profile sets
 * all four stages to one pipeline-wide false-positive budget), else 0.85 for confidence and plain
 * argmax disagreement for the ensemble.
 *
 * A model that does not take images (no preprocessing block: tabular, time series) is guarded by
 * what applies to it: its inputs' declared ranges (checked before the guard, src/runtime),
 * confidence and the ensemble; pixel statistics and squeezing are skipped.
 *
 * The guard fails closed at construction: an enabled stage without what it needs (a profile, an
 * ensemble model, a squeezing threshold) is a configuration error, not a silently skipped check.
 */
import { performance } from 'node:perf_hooks';
import { EdgeguardError } from '../errors/index.ts';
import type { ModelInput } from '../inference/index.ts';
import { argmax, type Classifier } from './classifier.ts';
import { DEFAULT_CONFIDENCE_THRESHOLD, type GuardConfig } from './config.ts';
import { validateStatistics, type GuardProfile, type StatisticViolation } from './profile.ts';
import { l1Distance, squeezeScore, type PlanarShape } from './squeeze.ts';
import { computeStatistics, type GuardImage, type InputStatistics } from './stats.ts';

export type Verdict = 'accept' | 'flag' | 'reject';

export type ReasonCode = 'out-of-profile' | 'low-confidence' | 'ensemble-disagreement' | 'squeeze-distance';

export interface GuardReason {
  stage: 'validation' | 'confidence' | 'ensemble' | 'squeeze';
  code: ReasonCode;
  message: string;
}

export interface Answer {
  source: 'primary' | 'fallback';
  index: number;
  label: string;
  confidence: number;
  scores: number[];
}

export interface StageResults {
  validation?: { passed: boolean; score: number; statistics: InputStatistics; violations: StatisticViolation[] };
  confidence?: { passed: boolean; value: number; threshold: number };
  /** `threshold` present: the stage fires on distance > threshold; absent: on argmax disagreement. */
  ensemble?: { passed: boolean; index: number; agrees: boolean; distance: number; threshold?: number };
  squeeze?: { passed: boolean; score: number; bitDepth: number; median: number; threshold: number };
}

export interface GuardResult {
  verdict: Verdict;
  reasons: GuardReason[];
  /** The answer to give (primary on accept, fallback on flag); absent on reject. */
  answer?: Answer;
  /** The primary model's own output, when it ran. */
  primary?: Answer;
  stages: StageResults;
  timings: {
    validationMs?: number;
    primaryMs?: number;
    ensembleMs?: number;
    squeezeMs?: number;
    fallbackMs?: number;
    totalMs: number;
  };
}

export interface GuardModels {
  primary: Classifier;
  /** A model of a different architecture; disagreement with the primary flags. */
  ensemble?: Classifier;
  /** Answers flagged inputs; defaults to the ensemble model. */
  fallback?: Classifier;
}

export interface GuardOptions extends GuardModels {
  config: GuardConfig;
  profile?: GuardProfile;
  /**
   * The model input without batch (NCHW planes), values on the 0..1 scale. Absent for a model
   * that does not take images: the image-only stages (pixel statistics, squeezing) do not apply.
   */
  shape?: PlanarShape | undefined;
  labels?: string[];
}

export interface GuardInput {
  /** The model input (1 x C x H x W values, 0..1). */
  tensor: Float32Array;
  /** The decoded image it came from (for validation); absent for a tensor sent as JSON. */
  image?: GuardImage;
  /** Precomputed statistics, instead of `image`. */
  statistics?: InputStatistics;
  /** The checked inputs of a model that is not an image classifier (then `tensor` is unused). */
  inputs?: readonly ModelInput[];
}

/** A model that does not take images: pixel statistics and squeezing do not apply to its inputs. */
function withoutImageStages(c: GuardConfig): GuardConfig {
  return { ...c, validation: { ...c.validation, enabled: false }, squeeze: { ...c.squeeze, enabled: false } };
}

export class Guard {
  readonly config: GuardConfig;
  readonly profile: GuardProfile | undefined;
  readonly squeezeThreshold: number | undefined;
  /** The confidence threshold in force (configuration, else profile, else 0.85). */
  readonly confidenceThreshold: number;
  /** The ensemble L1 threshold in force; undefined means argmax disagreement. */
  readonly ensembleThreshold: number | undefined;
  private readonly models: GuardModels;
  private readonly shape: PlanarShape | undefined;
  private readonly labels: string[] | undefined;

  constructor(o: GuardOptions) {
    this.profile = o.profile;
    this.models = { primary: o.primary, ensemble: o.ensemble, fallback: o.fallback ?? o.ensemble };
    this.shape = o.shape;
    this.labels = o.labels;
    const c = o.shape ? o.config : withoutImageStages(o.config);
    this.config = c;
    if (c.validation.enabled && !o.profile) {
      throw new EdgeguardError(
        'EG_CONFIG',
        'input validation is enabled but no calibrated profile was given; run `edgeguard guard calibrate` or set validation.enabled: false.',
      );
    }
    if (c.ensemble.enabled && !o.ensemble) {
      throw new EdgeguardError(
        'EG_CONFIG',
        'the ensemble stage is enabled but no ensemble model was given; configure a second model or set ensemble.enabled: false.',
      );
    }
    this.squeezeThreshold = c.squeeze.threshold ?? o.profile?.squeeze?.threshold;
    this.confidenceThreshold =
      c.confidence.threshold ?? o.profile?.pipeline?.confidenceThreshold ?? DEFAULT_CONFIDENCE_THRESHOLD;
    this.ensembleThreshold = c.ensemble.threshold ?? o.profile?.pipeline?.ensembleThreshold;
    if (c.squeeze.enabled && this.squeezeThreshold === undefined) {
      throw new EdgeguardError(
        'EG_CONFIG',
        'feature squeezing is enabled but has no threshold; calibrate the profile with the model, set squeeze.threshold, or set squeeze.enabled: false.',
      );
    }
    if (c.squeeze.enabled && o.profile?.squeeze && c.squeeze.threshold === undefined) {
      const p = o.profile.squeeze;
      if (p.bitDepth !== c.squeeze.bitDepth || p.medianSize !== c.squeeze.medianSize) {
        throw new EdgeguardError(
          'EG_CONFIG',
          `the profile's squeezing threshold was calibrated for ${p.bitDepth}-bit depth and a ${p.medianSize}x${p.medianSize} median, not the configured ${c.squeeze.bitDepth}/${c.squeeze.medianSize}; recalibrate.`,
        );
      }
    }
  }

  private answer(p: Float32Array, source: Answer['source']): Answer {
    const index = argmax(p);
    return {
      source,
      index,
      label: this.labels?.[index] ?? String(index),
      confidence: p[index]!,
      scores: Array.from(p),
    };
  }

  async check(input: GuardInput): Promise<GuardResult> {
    const t0 = performance.now();
    const c = this.config;
    const reasons: GuardReason[] = [];
    const stages: StageResults = {};
    const timings: GuardResult['timings'] = { totalMs: 0 };
    if (this.shape && input.tensor.length !== this.shape.channels * this.shape.height * this.shape.width) {
      throw new EdgeguardError(
        'EG_INPUT',
        `the guard got ${input.tensor.length} input values; the model takes ${this.shape.channels}x${this.shape.height}x${this.shape.width}.`,
      );
    }

    if (c.validation.enabled) {
      const s = performance.now();
      const statistics = input.statistics ?? (input.image ? computeStatistics(input.image) : undefined);
      if (!statistics)
        throw new EdgeguardError('EG_INPUT', 'input validation needs the decoded image or its statistics.');
      // A tensor sent as JSON has no codec or source size: only its pixel statistics are checked.
      const isTensor = statistics.format === 'tensor';
      const v = validateStatistics(statistics, this.profile!, {
        dimensions: c.validation.dimensions && !isTensor,
        format: c.validation.format && !isTensor,
      });
      stages.validation = { passed: v.passed, score: v.score, statistics, violations: v.violations };
      for (const x of v.violations) {
        reasons.push({
          stage: 'validation',
          code: 'out-of-profile',
          message: `${x.statistic} ${typeof x.value === 'number' ? Number(x.value.toPrecision(4)) : x.value} is outside the calibrated ${x.expected}`,
        });
      }
      timings.validationMs = performance.now() - s;
      if (!v.passed && c.shortCircuit) {
        timings.totalMs = performance.now() - t0;
        return { verdict: 'reject', reasons, stages, timings };
      }
    }

    let s = performance.now();
    const p = await this.models.primary(input.tensor, input.inputs);
    timings.primaryMs = performance.now() - s;
    const primary = this.answer(p, 'primary');

    if (c.confidence.enabled) {
      const threshold = this.confidenceThreshold;
      const passed = primary.confidence >= threshold;
      stages.confidence = { passed, value: primary.confidence, threshold };
      if (!passed)
        reasons.push({
          stage: 'confidence',
          code: 'low-confidence',
          message: `confidence ${primary.confidence.toFixed(3)} is below ${Number(threshold.toPrecision(4))}`,
        });
    }

    let ensembleProbs: Float32Array | undefined;
    if (c.ensemble.enabled && this.models.ensemble) {
      s = performance.now();
      ensembleProbs = await this.models.ensemble(input.tensor, input.inputs);
      timings.ensembleMs = performance.now() - s;
      const index = argmax(ensembleProbs);
      const agrees = index === primary.index;
      const distance = l1Distance(p, ensembleProbs);
      const threshold = this.ensembleThreshold;
      const passed = threshold === undefined ? agrees : distance <= threshold;
      stages.ensemble = { passed, index, agrees, distance, ...(threshold === undefined ? {} : { threshold }) };
      if (!passed) {
        const says = `the ensemble model says ${this.labels?.[index] ?? index}, the primary ${primary.label}`;
        reasons.push({
          stage: 'ensemble',
          code: 'ensemble-disagreement',
          message:
            threshold === undefined
              ? says
              : `the two models' probabilities differ by ${distance.toFixed(3)} (L1), above ${threshold.toFixed(3)}; ${says}`,
        });
      }
    }

    if (c.squeeze.enabled && this.shape) {
      s = performance.now();
      const sq = await squeezeScore(this.models.primary, input.tensor, p, this.shape, c.squeeze);
      timings.squeezeMs = performance.now() - s;
      const threshold = this.squeezeThreshold!;
      const passed = sq.score <= threshold;
      stages.squeeze = { passed, score: sq.score, bitDepth: sq.bitDepth, median: sq.median, threshold };
      if (!passed)
        reasons.push({
          stage: 'squeeze',
          code: 'squeeze-distance',
          message: `squeezing moved the prediction by ${sq.score.toFixed(3)} (L1), above ${threshold.toFixed(3)}`,
        });
    }

    let verdict: Verdict;
    let answer: Answer | undefined;
    if (stages.validation && !stages.validation.passed) {
      verdict = 'reject';
    } else if (reasons.length > 0) {
      verdict = 'flag';
      if (this.models.fallback) {
        if (this.models.fallback === this.models.ensemble && ensembleProbs) {
          answer = this.answer(ensembleProbs, 'fallback');
        } else {
          s = performance.now();
          answer = this.answer(await this.models.fallback(input.tensor, input.inputs), 'fallback');
          timings.fallbackMs = performance.now() - s;
        }
      } else {
        answer = primary;
      }
    } else {
      verdict = 'accept';
      answer = primary;
    }
    timings.totalMs = performance.now() - t0;
    return { verdict, reasons, ...(answer ? { answer } : {}), primary, stages, timings };
  }
}
