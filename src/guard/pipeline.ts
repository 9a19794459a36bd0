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
import { DEFAULT_CONFIDENCE_THRESHOLD, DEFAULT_SQUEEZERS, type GuardConfig } from './config.ts';
import { validateStatistics, type GuardProfile, type StatisticViolation } from './profile.ts';
import {
  l1Distance,
  squeezeDistances,
  withSqueezedCopies,
  type PlanarShape,
  type SqueezeScore,
  type SqueezeSettings,
} from './squeeze.ts';
import { computeStatistics, NUMERIC_STATISTICS, type GuardImage, type InputStatistics } from './stats.ts';
import {
  combinedScore,
  componentValues,
  type CombinedScore,
  type ComponentName,
  type ComponentValues,
} from './combiner.ts';

export type Verdict = 'accept' | 'flag' | 'reject';

export type ReasonCode =
  'out-of-profile' | 'low-confidence' | 'ensemble-disagreement' | 'squeeze-distance' | 'combined-score';

export interface GuardReason {
  stage: 'validation' | 'confidence' | 'ensemble' | 'squeeze' | 'combined';
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
  /**
   * The calibrated combiner (version-3 profile): Fisher's sum of -ln p of every component present,
   * and each component's share. When it is present the verdict is its decision, and the stages'
   * own `passed` flags above are informational unless their threshold is configured.
   */
  combined?: { passed: boolean; score: number; threshold: number; parts: ComponentValues };
}

export interface GuardResult {
  verdict: Verdict;
  reasons: GuardReason[];
  /** The answer to give (primary on accept, fallback on flag); absent on reject. */
  answer?: Answer;
  /** The primary model's own output, when it ran. */
  primary?: Answer;
  stages: StageResults;
  /**
   * Milliseconds. The models run concurrently, so primaryMs and ensembleMs overlap; primaryMs
   * includes the squeezed copies when the primary takes batches, and squeezeMs is then the
   * squeezers and distances only.
   */
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
  /** The squeezers in force: the configuration's, else the profile's, else DEFAULT_SQUEEZERS. */
  readonly squeezers: SqueezeSettings;
  /** The calibrated combiner that decides (a version-3 profile, combiner.enabled); else per-stage thresholds. */
  readonly combiner: NonNullable<GuardProfile['combiner']> | undefined;
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
    this.combiner = c.combiner.enabled ? o.profile?.combiner : undefined;
    if (c.squeeze.enabled && this.squeezeThreshold === undefined) {
      throw new EdgeguardError(
        'EG_CONFIG',
        'feature squeezing is enabled but has no threshold; calibrate the profile with the model, set squeeze.threshold, or set squeeze.enabled: false.',
      );
    }
    const calibrated = o.profile?.squeeze;
    this.squeezers = {
      bitDepth: c.squeeze.bitDepth ?? calibrated?.bitDepth ?? DEFAULT_SQUEEZERS.bitDepth,
      medianSize: c.squeeze.medianSize ?? calibrated?.medianSize ?? DEFAULT_SQUEEZERS.medianSize,
    };
    if (c.squeeze.enabled && calibrated && c.squeeze.threshold === undefined) {
      const s = this.squeezers;
      if (calibrated.bitDepth !== s.bitDepth || calibrated.medianSize !== s.medianSize) {
        throw new EdgeguardError(
          'EG_CONFIG',
          `the profile's squeezing threshold was calibrated for ${calibrated.bitDepth}-bit depth and a ${calibrated.medianSize}x${calibrated.medianSize} median, not the configured ${s.bitDepth}/${s.medianSize}; recalibrate, or leave squeeze.bitDepth and squeeze.medianSize unset.`,
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
    if (this.shape && input.tensor.length !== this.shape.channels * this.shape.height * this.shape.width) {
      throw new EdgeguardError(
        'EG_INPUT',
        `the guard got ${input.tensor.length} input values; the model takes ${this.shape.channels}x${this.shape.height}x${this.shape.width}.`,
      );
    }
    const run: Run = { reasons: [], stages: {}, timings: { totalMs: 0 } };
    this.validate(input, run);
    if (this.rejectsBeforeModels(run)) {
      run.timings.totalMs = performance.now() - t0;
      return { verdict: 'reject', reasons: run.reasons, stages: run.stages, timings: run.timings };
    }
    const m = await this.modelStages(input.tensor, input.inputs, run);
    const verdict = this.combiner ? this.decideCombined(run) : this.decidePerStage(run);
    let answer: Answer | undefined;
    if (verdict === 'accept') answer = m.primary;
    else if (verdict === 'flag') answer = await this.fallbackAnswer(input.tensor, input.inputs, m, run);
    run.timings.totalMs = performance.now() - t0;
    return {
      verdict,
      reasons: run.reasons,
      ...(answer ? { answer } : {}),
      primary: m.primary,
      stages: run.stages,
      timings: run.timings,
    };
  }

  /** Input validation: statistics against the profile's bounds (their reasons count in per-stage mode). */
  private validate(input: GuardInput, run: Run): void {
    const c = this.config;
    if (!c.validation.enabled) return;
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
    run.stages.validation = { passed: v.passed, score: v.score, statistics, violations: v.violations };
    for (const x of v.violations) {
      // With the combiner only the source's size and format decide on their own; the statistics go into the sum.
      if (this.combiner && x.statistic !== 'dimensions' && x.statistic !== 'format') continue;
      run.reasons.push({
        stage: 'validation',
        code: 'out-of-profile',
        message: `${x.statistic} ${typeof x.value === 'number' ? Number(x.value.toPrecision(4)) : x.value} is outside the calibrated ${x.expected}`,
      });
    }
    run.timings.validationMs = performance.now() - s;
  }

  /**
   * Whether validation alone already rejects, so that (with shortCircuit) no model runs: a
   * violation in per-stage mode; with the combiner, a size or format never calibrated, or
   * statistics whose share of the sum alone exceeds the threshold (the model parts only add).
   */
  private rejectsBeforeModels(run: Run): boolean {
    if (!this.config.shortCircuit || !run.stages.validation) return false;
    if (!this.combiner) return !run.stages.validation.passed;
    if (run.reasons.length > 0) return true;
    const statisticsOnly = combinedScore(
      this.combiner.components,
      componentValues(run.stages.validation.statistics, {}),
    );
    run.statisticsParts = statisticsOnly.parts;
    if (statisticsOnly.score <= this.combiner.threshold) return false;
    this.recordCombined(run, statisticsOnly);
    return true;
  }

  /**
   * The models, all started at once: the primary on the input (and, with squeezing, on its two
   * squeezed copies, in one batched run when the model takes batches), the ensemble beside it.
   * ONNX Runtime's Node binding runs each call on the event loop after a turn, so concurrent
   * calls share that turn and a batch shares one call. Scores and verdicts are those of separate
   * runs (test/guard/batched.test.ts).
   */
  private async modelStages(
    tensor: Float32Array,
    inputs: readonly ModelInput[] | undefined,
    run: Run,
  ): Promise<ModelOutputs> {
    const c = this.config;
    const t0 = performance.now();
    const squeezing = c.squeeze.enabled && this.shape !== undefined;
    const batch = squeezing ? withSqueezedCopies(tensor, this.shape!, this.squeezers) : undefined;
    const squeezeMs = performance.now() - t0;
    const ensemble = c.ensemble.enabled ? this.models.ensemble : undefined;
    let outputs: Float32Array[];
    let ensembleProbs: Float32Array | undefined;
    try {
      [outputs, ensembleProbs] = await Promise.all([
        this.timed(run, 'primaryMs', this.runPrimary(tensor, inputs, batch)),
        ensemble ? this.timed(run, 'ensembleMs', ensemble(tensor, inputs)) : undefined,
      ]);
    } finally {
      batch?.fill(0); // a copy of the input and what was derived from it
    }
    const p = outputs[0]!;
    const primary = this.answer(p, 'primary');
    if (c.confidence.enabled) this.confidenceStage(primary, run);
    if (ensembleProbs) this.ensembleStage(p, primary, ensembleProbs, run);
    if (batch) {
      const s = performance.now();
      this.squeezeStage(squeezeDistances(p, outputs[1]!, outputs[2]!), run);
      run.timings.squeezeMs = squeezeMs + performance.now() - s;
    }
    return { primary, ...(ensembleProbs ? { ensembleProbs } : {}) };
  }

  /** The primary's probabilities on the input, then on each squeezed copy (`batch`: all three, one batched run when it can). */
  private runPrimary(
    tensor: Float32Array,
    inputs: readonly ModelInput[] | undefined,
    batch: Float32Array | undefined,
  ): Promise<Float32Array[]> {
    const primary = this.models.primary;
    if (!batch) return primary(tensor, inputs).then((p) => [p]);
    if (primary.batch) return primary.batch(batch, 3);
    const n = tensor.length;
    return Promise.all([primary(tensor, inputs), primary(batch.subarray(n, 2 * n)), primary(batch.subarray(2 * n))]);
  }

  private async timed<T>(run: Run, key: 'primaryMs' | 'ensembleMs', work: Promise<T>): Promise<T> {
    const s = performance.now();
    const out = await work;
    run.timings[key] = performance.now() - s;
    return out;
  }

  private squeezeStage(sq: SqueezeScore, run: Run): void {
    const threshold = this.squeezeThreshold!;
    const passed = sq.score <= threshold;
    run.stages.squeeze = { passed, score: sq.score, bitDepth: sq.bitDepth, median: sq.median, threshold };
    if (!passed && this.decidesAlone('squeeze'))
      run.reasons.push({
        stage: 'squeeze',
        code: 'squeeze-distance',
        message: `squeezing moved the prediction by ${sq.score.toFixed(3)} (L1), above ${threshold.toFixed(3)}`,
      });
  }

  private confidenceStage(primary: Answer, run: Run): void {
    const threshold = this.confidenceThreshold;
    const passed = primary.confidence >= threshold;
    run.stages.confidence = { passed, value: primary.confidence, threshold };
    if (!passed && this.decidesAlone('confidence'))
      run.reasons.push({
        stage: 'confidence',
        code: 'low-confidence',
        message: `confidence ${primary.confidence.toFixed(3)} is below ${Number(threshold.toPrecision(4))}`,
      });
  }

  private ensembleStage(p: Float32Array, primary: Answer, q: Float32Array, run: Run): void {
    const index = argmax(q);
    const agrees = index === primary.index;
    const distance = l1Distance(p, q);
    const threshold = this.ensembleThreshold;
    const passed = threshold === undefined ? agrees : distance <= threshold;
    run.stages.ensemble = { passed, index, agrees, distance, ...(threshold === undefined ? {} : { threshold }) };
    if (passed || !this.decidesAlone('ensemble')) return;
    const says = `the ensemble model says ${this.labels?.[index] ?? index}, the primary ${primary.label}`;
    run.reasons.push({
      stage: 'ensemble',
      code: 'ensemble-disagreement',
      message:
        threshold === undefined
          ? says
          : `the two models' probabilities differ by ${distance.toFixed(3)} (L1), above ${threshold.toFixed(3)}; ${says}`,
    });
  }

  /** Whether a stage's own threshold decides: always per stage; with the combiner only when configured. */
  private decidesAlone(stage: 'confidence' | 'ensemble' | 'squeeze'): boolean {
    return !this.combiner || this.config[stage].threshold !== undefined;
  }

  private decidePerStage(run: Run): Verdict {
    if (run.stages.validation && !run.stages.validation.passed) return 'reject';
    return run.reasons.length > 0 ? 'flag' : 'accept';
  }

  /**
   * The combiner's verdict: a size or format never calibrated rejects; a combined score above the
   * threshold rejects when an input statistic contributes most (the input is unlike the legitimate
   * ones) and flags otherwise (the models are unsure of it); a configured stage threshold flags.
   */
  private decideCombined(run: Run): Verdict {
    const st = run.stages;
    if (run.reasons.some((r) => r.stage === 'validation')) return 'reject';
    const model = {
      ...(st.confidence ? { confidence: st.confidence.value } : {}),
      ...(st.ensemble ? { ensemble: st.ensemble.distance } : {}),
      ...(st.squeeze ? { squeezeBits: st.squeeze.bitDepth, squeezeMedian: st.squeeze.median } : {}),
    };
    const tables = this.combiner!.components;
    // The statistics' parts, when the short-circuit check already computed them, are not computed again.
    const combined = run.statisticsParts
      ? combinedScore(tables, model, run.statisticsParts)
      : combinedScore(tables, componentValues(st.validation?.statistics, model));
    const top = this.recordCombined(run, combined);
    if (!st.combined!.passed) return top !== undefined && isStatistic(top) ? 'reject' : 'flag';
    return run.reasons.length > 0 ? 'flag' : 'accept';
  }

  /** Records the combined stage and, when it fires, its reason and its largest contributor (returned). */
  private recordCombined(run: Run, combined: CombinedScore): ComponentName | undefined {
    const threshold = this.combiner!.threshold;
    const passed = combined.score <= threshold;
    run.stages.combined = { passed, score: combined.score, threshold, parts: combined.parts };
    if (passed) return undefined;
    const ranked = (Object.entries(combined.parts) as Array<[ComponentName, number]>).sort((a, b) => b[1] - a[1]);
    const largest = ranked
      .slice(0, 3)
      .map(([name, part]) => `${name} ${part.toFixed(1)}`)
      .join(', ');
    run.reasons.unshift({
      stage: 'combined',
      code: 'combined-score',
      message: `the stage scores together are unlike the calibration inputs: combined score ${combined.score.toFixed(2)} above ${threshold.toFixed(2)} (largest -ln p: ${largest})`,
    });
    return ranked[0]?.[0];
  }

  private async fallbackAnswer(
    tensor: Float32Array,
    inputs: readonly ModelInput[] | undefined,
    m: ModelOutputs,
    run: Run,
  ): Promise<Answer> {
    const fallback = this.models.fallback;
    if (!fallback) return m.primary;
    if (fallback === this.models.ensemble && m.ensembleProbs) return this.answer(m.ensembleProbs, 'fallback');
    const s = performance.now();
    const answer = this.answer(await fallback(tensor, inputs), 'fallback');
    run.timings.fallbackMs = performance.now() - s;
    return answer;
  }
}

interface Run {
  reasons: GuardReason[];
  stages: StageResults;
  timings: GuardResult['timings'];
  /** -ln p of the statistics, from the short-circuit check. */
  statisticsParts?: ComponentValues;
}

interface ModelOutputs {
  primary: Answer;
  ensembleProbs?: Float32Array;
}

function isStatistic(name: ComponentName): boolean {
  return (NUMERIC_STATISTICS as readonly string[]).includes(name);
}
