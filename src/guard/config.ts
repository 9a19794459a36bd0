/**
 * Guard configuration (YAML, validated with zod). Every field has a default, so an empty file
 * (or none) gives the full pipeline: validation against the calibrated profile, confidence,
 * ensemble and feature squeezing, each with the profile's calibrated threshold.
 *
 *   profile: profile.json        # from `edgeguard guard calibrate`
 *   validation: { enabled: true, dimensions: true, format: true }
 *   confidence: { enabled: true, threshold: 0.85 }  # threshold overrides the profile's
 *   ensemble:   { enabled: true, threshold: 1.2 }   # L1 distance; overrides the profile's
 *   squeeze:    { enabled: true, threshold: 0.4 }   # overrides the profile's
 *
 * Threshold precedence, per stage: the value in this file, else the profile's calibrated value
 * (a version-2 profile carries one for every stage), else the built-in default: 0.85 for
 * confidence (the seed's value), argmax disagreement for the ensemble; squeezing has none.
 */
import { z } from 'zod';
import { checkConfig, parseYamlText } from '../config/index.ts';
import { FILE_CAPS, readBoundedText } from '../errors/index.ts';

export const guardConfigSchema = z
  .object({
    /** Path of the calibrated profile (resolved by the caller, relative to the config file). */
    profile: z.string().min(1).max(4096).optional(),
    validation: z
      .object({
        enabled: z.boolean().default(true),
        /** Check the source image's dimensions against the calibrated range. */
        dimensions: z.boolean().default(true),
        /** Check the source image's format against the calibrated set. */
        format: z.boolean().default(true),
      })
      .strict()
      .prefault({}),
    confidence: z
      .object({
        enabled: z.boolean().default(true),
        /** Overrides the profile's calibrated threshold; without either, DEFAULT_CONFIDENCE_THRESHOLD. */
        threshold: z.number().min(0).max(1).optional(),
      })
      .strict()
      .prefault({}),
    ensemble: z
      .object({
        enabled: z.boolean().default(true),
        /**
         * Flag when the L1 distance between the two models' probabilities (0..2) exceeds this;
         * overrides the profile's. Without either, the two argmaxes differing flags.
         */
        threshold: z.number().min(0).max(2).optional(),
      })
      .strict()
      .prefault({}),
    squeeze: z
      .object({
        enabled: z.boolean().default(true),
        /** Overrides the profile's calibrated threshold (L1 distance, 0..2). */
        threshold: z.number().min(0).max(2).optional(),
        /** Squeezers: the configuration's, else the profile's calibrated ones, else DEFAULT_SQUEEZERS. */
        bitDepth: z.number().int().min(1).max(16).optional(),
        medianSize: z.number().int().min(1).max(9).optional(),
      })
      .strict()
      .prefault({}),
    /**
     * Decide with the profile's calibrated combiner when it has one (version 3); false keeps the
     * per-stage thresholds of its pipeline section.
     */
    combiner: z
      .object({ enabled: z.boolean().default(true) })
      .strict()
      .prefault({}),
    /** After a validation reject, skip the model stages (true) or still compute them (false). */
    shortCircuit: z.boolean().default(true),
  })
  .strict();

/**
 * The squeezers without a profile or configuration that names others: Xu et al.'s MNIST pair
 * (1-bit depth, 2x2 median). Calibration recommends RECOMMENDED_SQUEEZERS instead.
 */
export const DEFAULT_SQUEEZERS = { bitDepth: 1, medianSize: 2 } as const;

/**
 * What to calibrate new profiles with: a 3x3 median instead of 2x2, which measured better against
 * attacks confined to stroke pixels at the same cost (docs/guard.md, adaptive evaluation).
 */
export const RECOMMENDED_SQUEEZERS = { bitDepth: 1, medianSize: 3 } as const;

/** The seed's confidence threshold, used when neither the configuration nor the profile sets one. */
export const DEFAULT_CONFIDENCE_THRESHOLD = 0.85;

export type GuardConfig = z.infer<typeof guardConfigSchema>;
export type GuardConfigInput = z.input<typeof guardConfigSchema>;

export function guardConfig(value: unknown = {}, where = 'the guard configuration'): GuardConfig {
  return checkConfig(guardConfigSchema, value, where);
}

export function parseGuardConfigYaml(text: string, where = 'the guard configuration'): GuardConfig {
  return guardConfig(parseYamlText(text, where), where);
}

export async function loadGuardConfig(path: string): Promise<GuardConfig> {
  const text = await readBoundedText(path, FILE_CAPS.config, 'read the guard configuration');
  return parseGuardConfigYaml(text, path);
}
