/**
 * Guard configuration (YAML, validated with zod). Every field has a default, so an empty file
 * (or none) gives the full pipeline: validation against the calibrated profile, the 0.85
 * confidence threshold, ensemble disagreement, and feature squeezing with the profile's threshold.
 *
 *   profile: profile.json        # from `edgeguard guard calibrate`
 *   validation: { enabled: true, dimensions: true, format: true }
 *   confidence: { enabled: true, threshold: 0.85 }
 *   ensemble:   { enabled: true }
 *   squeeze:    { enabled: true, threshold: 0.4 }   # threshold overrides the profile's
 */
import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { EdgeguardError, fsError } from '../errors/index.ts';

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
        threshold: z.number().min(0).max(1).default(0.85),
      })
      .strict()
      .prefault({}),
    ensemble: z.object({ enabled: z.boolean().default(true) }).strict().prefault({}),
    squeeze: z
      .object({
        enabled: z.boolean().default(true),
        /** Overrides the profile's calibrated threshold (L1 distance, 0..2). */
        threshold: z.number().min(0).max(2).optional(),
        bitDepth: z.number().int().min(1).max(16).default(1),
        medianSize: z.number().int().min(1).max(9).default(2),
      })
      .strict()
      .prefault({}),
    /** After a validation reject, skip the model stages (true) or still compute them (false). */
    shortCircuit: z.boolean().default(true),
  })
  .strict();

export type GuardConfig = z.infer<typeof guardConfigSchema>;
export type GuardConfigInput = z.input<typeof guardConfigSchema>;

export function guardConfig(value: unknown = {}, where = 'the guard configuration'): GuardConfig {
  const r = guardConfigSchema.safeParse(value ?? {});
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new EdgeguardError('EG_CONFIG', `${where} is invalid at ${issue?.path.join('.') || 'the top level'}: ${issue?.message ?? 'schema mismatch'}.`);
  }
  return r.data;
}

export function parseGuardConfigYaml(text: string, where = 'the guard configuration'): GuardConfig {
  let value: unknown;
  try {
    value = parseYaml(text, { maxAliasCount: 16 });
  } catch (e) {
    throw new EdgeguardError('EG_CONFIG', `${where} is not valid YAML (${(e as Error).message.split('\n')[0]}).`, { cause: e });
  }
  return guardConfig(value, where);
}

export async function loadGuardConfig(path: string): Promise<GuardConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw fsError(e, path, 'read the guard configuration');
  }
  return parseGuardConfigYaml(text, path);
}
