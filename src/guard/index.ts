/** Public face of the adversarial-input guard: statistics, profile, squeezing, pipeline, calibration. */
export {
  type GuardImage,
  type InputStatistics,
  type NumericStatistic,
  NUMERIC_STATISTICS,
  computeStatistics,
  luminance,
  immerkaerNoise,
  laplacianVariance,
  floatImageToGuardImage,
} from './stats.ts';
export {
  type PlanarShape,
  type SqueezeSettings,
  type SqueezeScore,
  reduceBitDepth,
  medianFilter,
  l1Distance,
  squeezeScore,
  withSqueezedCopies,
  squeezeDistances,
} from './squeeze.ts';
export {
  type Classifier,
  type SessionClassifierOptions,
  sessionClassifier,
  loadedModelClassifier,
  argmax,
} from './classifier.ts';
export {
  type GuardProfile,
  type StatisticViolation,
  type ValidationOutcome,
  PROFILE_KIND,
  PROFILE_VERSION,
  MAX_PROFILE_BYTES,
  profileSchema,
  parseProfile,
  serializeProfile,
  validateStatistics,
} from './profile.ts';
export {
  type CalibrationSample,
  type CalibrateOptions,
  MIN_CALIBRATION_SAMPLES,
  calibrateProfile,
} from './calibrate.ts';
export { thresholdAtFpr, lowerThresholdAtRate, rateUpperBound, allowedCount } from './rates.ts';
export {
  type GuardConfig,
  type GuardConfigInput,
  DEFAULT_CONFIDENCE_THRESHOLD,
  DEFAULT_SQUEEZERS,
  RECOMMENDED_SQUEEZERS,
  guardConfigSchema,
  guardConfig,
  parseGuardConfigYaml,
  loadGuardConfig,
} from './config.ts';
export {
  type Verdict,
  type ReasonCode,
  type GuardReason,
  type Answer,
  type StageResults,
  type GuardResult,
  type GuardModels,
  type GuardOptions,
  type GuardInput,
  Guard,
} from './pipeline.ts';
export {
  type ComponentName,
  type ComponentTable,
  type ComponentValues,
  type CombinerTables,
  type CombinedScore,
  type TailTable,
  MAX_KNOTS,
  MODEL_COMPONENTS,
  COMBINED_MODEL_COMPONENTS,
  fitTailTable,
  upperPValue,
  componentPValue,
  fitCombinerTables,
  combinedScore,
  componentValues,
} from './combiner.ts';
export { guardInputShape } from './model-input.ts';
export {
  type ProbingSettings,
  type ProbingReason,
  type ProbingDecision,
  SKETCH_SIZE,
  ProbingMonitor,
  sketch,
} from './probing.ts';
