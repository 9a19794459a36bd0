/**
 * The calibrated input profile (profile.json): per-statistic bounds learned from legitimate
 * inputs at a chosen false-positive rate, the accepted dimensions and formats, and the feature-
 * squeezing threshold. It is outside input to the device (it arrives with a model), so it is
 * parsed strictly: bounded size, a fixed schema (zod, unknown keys refused), finite numbers,
 * min <= max. The layout is documented in docs/formats.md ("Guard profile").
 */
import { z } from 'zod';
import { EdgeguardError } from '../errors/index.ts';
import { MAX_KNOTS, MODEL_COMPONENTS } from './combiner.ts';
import { NUMERIC_STATISTICS, type InputStatistics, type NumericStatistic } from './stats.ts';

export const PROFILE_KIND = 'edgeguard-guard-profile';
/**
 * Written with a `pipeline` and a `combiner` section; version 2 (a pipeline section only) and
 * version 1 (per-stage) are still read, and a per-stage profile is still written as version 1.
 */
export const PROFILE_VERSION = 3;
/** A version-3 profile with all fifteen p-value tables is about 45 KiB. */
export const MAX_PROFILE_BYTES = 256 * 1024;

const finite = z.number().finite();
const rate = z.number().min(0).max(1);

const boundsSchema = z
  .object({ min: finite, max: finite })
  .strict()
  .refine((b) => b.min <= b.max, { message: 'min must not exceed max' });

const statisticsShape = Object.fromEntries(NUMERIC_STATISTICS.map((s) => [s, boundsSchema])) as Record<
  NumericStatistic,
  typeof boundsSchema
>;

const tailTableSchema = z
  .object({
    n: z.number().int().min(1).max(100_000_000),
    values: z.array(finite).min(1).max(MAX_KNOTS),
    atLeast: z.array(z.number().int().min(0)).min(1).max(MAX_KNOTS),
    scale: z.number().finite().gt(0),
  })
  .strict()
  .refine(
    (t) =>
      t.values.length === t.atLeast.length &&
      t.values.every((v, i) => i === 0 || v > t.values[i - 1]!) &&
      t.atLeast.every((c, i) => c <= t.n && (i === 0 || c <= t.atLeast[i - 1]!)),
    { message: 'a p-value table needs ascending values and non-increasing counts, one per value, at most n' },
  );

const componentTableSchema = z
  .object({ upper: tailTableSchema.optional(), lower: tailTableSchema.optional() })
  .strict()
  .refine((c) => c.upper !== undefined || c.lower !== undefined, { message: 'a component needs a tail table' });

const componentsShape = Object.fromEntries(
  [...NUMERIC_STATISTICS, ...MODEL_COMPONENTS].map((c) => [c, componentTableSchema.optional()]),
) as Record<NumericStatistic | (typeof MODEL_COMPONENTS)[number], z.ZodOptional<typeof componentTableSchema>>;

export const profileSchema = z
  .object({
    kind: z.literal(PROFILE_KIND),
    version: z.union([z.literal(1), z.literal(2), z.literal(3)]),
    createdAt: z.string().max(64),
    /** Which model it was calibrated for (informational; the guard config binds them). */
    model: z
      .object({
        name: z.string().max(128),
        version: z.number().int().min(0).optional(),
        sha256: z
          .string()
          .regex(/^[0-9a-f]{64}$/)
          .optional(),
      })
      .strict()
      .optional(),
    samples: z.number().int().min(1).max(100_000_000),
    validation: z
      .object({
        /** Target false-positive rate of the whole validation stage on the calibration set. */
        fpr: z.number().min(0).lt(1),
        /** Tail mass cut from each side of each statistic to reach that rate. */
        tail: rate,
        statistics: z.object(statisticsShape).strict(),
        dimensions: z
          .object({
            minWidth: z.number().int().min(1).max(1_000_000),
            maxWidth: z.number().int().min(1).max(1_000_000),
            minHeight: z.number().int().min(1).max(1_000_000),
            maxHeight: z.number().int().min(1).max(1_000_000),
          })
          .strict()
          .refine((d) => d.minWidth <= d.maxWidth && d.minHeight <= d.maxHeight, {
            message: 'minimum dimensions must not exceed maximum',
          }),
        formats: z
          .array(z.string().regex(/^[a-z0-9]{1,16}$/))
          .min(1)
          .max(16),
        /** Measured rejection rate on the calibration set. */
        measuredFpr: rate,
      })
      .strict(),
    squeeze: z
      .object({
        fpr: z.number().min(0).lt(1),
        bitDepth: z.number().int().min(1).max(16),
        medianSize: z.number().int().min(1).max(9),
        /** L1 distance above which an input is flagged (0..2). */
        threshold: z.number().min(0).max(2),
        measuredFpr: rate,
      })
      .strict()
      .optional(),
    /** Rates of the fixed-threshold stages on the calibration set, for planning the total FPR. */
    observed: z
      .object({
        lowConfidenceRate: rate.optional(),
        confidenceThreshold: rate.optional(),
        ensembleDisagreementRate: rate.optional(),
      })
      .strict()
      .optional(),
    /**
     * Version 2: the whole pipeline calibrated to one false-positive budget. Every stage's
     * threshold sits at the same per-stage rate `stageRate`, the largest for which the
     * cross-validated share of calibration inputs flagged or rejected by at least one stage keeps
     * the Clopper-Pearson upper bound at `fprConfidence` within `fpr`.
     */
    pipeline: z
      .object({
        fpr: z.number().gt(0).lt(1),
        fprConfidence: z.number().min(0).lt(1),
        folds: z.number().int().min(2).max(100),
        stageRate: rate,
        /** Flag when the primary's top probability is below this (replaces the 0.85 default). */
        confidenceThreshold: rate,
        /** Flag when the L1 distance between the two models' probabilities exceeds this (0..2). */
        ensembleThreshold: z.number().min(0).max(2).optional(),
        /** Share of the calibration inputs the whole pipeline flags or rejects, held out by fold. */
        crossValidatedFpr: rate,
        /** One-sided upper confidence bound (level fprConfidence) on the pipeline's false-positive rate. */
        upperBound: rate,
        /** Share of the calibration inputs the final thresholds flag or reject (in-sample, optimistic). */
        measuredFpr: rate,
      })
      .strict()
      .optional(),
    /**
     * Version 3: the calibrated combiner (combiner.ts). Fisher's sum of -ln p over the components
     * present; flag or reject when it exceeds `threshold`, fitted to the pipeline section's budget
     * on cross-validated scores.
     */
    combiner: z
      .object({
        method: z.literal('fisher'),
        threshold: z.number().finite().min(0),
        crossValidatedFpr: rate,
        upperBound: rate,
        measuredFpr: rate,
        components: z.object(componentsShape).strict(),
      })
      .strict()
      .optional(),
  })
  .strict()
  .refine((p) => p.version >= 2 || p.pipeline === undefined, {
    message: 'a pipeline section needs profile version 2 or 3',
    path: ['pipeline'],
  })
  .refine((p) => (p.version === 3) === (p.combiner !== undefined && p.pipeline !== undefined), {
    message: 'profile version 3 has a combiner and a pipeline section, and only version 3 has a combiner',
    path: ['combiner'],
  });

export type GuardProfile = z.infer<typeof profileSchema>;

/** Parse profile.json bytes or text; any defect is EG_FORMAT with the first problem named. */
export function parseProfile(input: Uint8Array | string, where = 'the guard profile'): GuardProfile {
  const size = typeof input === 'string' ? Buffer.byteLength(input) : input.byteLength;
  if (size > MAX_PROFILE_BYTES) {
    throw new EdgeguardError(
      'EG_FORMAT',
      `${where} is ${size} bytes, more than the ${MAX_PROFILE_BYTES} allowed; it is not a profile written by edgeguard guard calibrate.`,
    );
  }
  let text: string;
  try {
    text = typeof input === 'string' ? input : new TextDecoder('utf-8', { fatal: true }).decode(input);
  } catch (e) {
    throw new EdgeguardError(
      'EG_FORMAT',
      `${where} is not valid UTF-8; regenerate it with edgeguard guard calibrate.`,
      { cause: e },
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new EdgeguardError('EG_FORMAT', `${where} is not valid JSON; regenerate it with edgeguard guard calibrate.`, {
      cause: e,
    });
  }
  const r = profileSchema.safeParse(value);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new EdgeguardError(
      'EG_FORMAT',
      `${where} is invalid at ${issue?.path.join('.') || 'the top level'}: ${issue?.message ?? 'schema mismatch'}.`,
    );
  }
  return r.data;
}

export function serializeProfile(p: GuardProfile): string {
  return JSON.stringify(profileSchema.parse(p), null, 2) + '\n';
}

export interface StatisticViolation {
  statistic: NumericStatistic | 'dimensions' | 'format';
  value: number | string;
  /** The accepted range (numbers) or set (format). */
  expected: string;
}

export interface ValidationOutcome {
  passed: boolean;
  /**
   * A continuous anomaly score: max over statistics of the distance outside [min, max] in units
   * of the range width (negative inside the bounds, > 0 means rejected); 1e6 for a dimension or
   * format violation. Used for ROC curves; `passed` is score <= 0 and no categorical violation.
   */
  score: number;
  violations: StatisticViolation[];
}

export interface ValidationChecks {
  dimensions: boolean;
  format: boolean;
}

const CATEGORICAL_SCORE = 1e6;

/** Check one input's statistics against the profile's bounds. */
export function validateStatistics(
  stats: InputStatistics,
  profile: GuardProfile,
  checks: ValidationChecks = { dimensions: true, format: true },
): ValidationOutcome {
  const v = profile.validation;
  const violations: StatisticViolation[] = [];
  let score = -Infinity;
  for (const name of NUMERIC_STATISTICS) {
    const b = v.statistics[name];
    const value = stats[name];
    const width = Math.max(b.max - b.min, 1e-9);
    const s = Number.isFinite(value) ? Math.max(b.min - value, value - b.max) / width : CATEGORICAL_SCORE;
    score = Math.max(score, s);
    if (!(value >= b.min && value <= b.max))
      violations.push({ statistic: name, value, expected: `${fmt(b.min)}..${fmt(b.max)}` });
  }
  if (checks.dimensions) {
    const d = v.dimensions;
    if (
      stats.width < d.minWidth ||
      stats.width > d.maxWidth ||
      stats.height < d.minHeight ||
      stats.height > d.maxHeight
    ) {
      violations.push({
        statistic: 'dimensions',
        value: `${stats.width}x${stats.height}`,
        expected: `${d.minWidth}..${d.maxWidth} x ${d.minHeight}..${d.maxHeight}`,
      });
      score = CATEGORICAL_SCORE;
    }
  }
  if (checks.format && !v.formats.includes(stats.format)) {
    violations.push({ statistic: 'format', value: stats.format, expected: v.formats.join(', ') });
    score = CATEGORICAL_SCORE;
  }
  return { passed: violations.length === 0, score, violations };
}

function fmt(n: number): string {
  return Number(n.toPrecision(4)).toString();
}
