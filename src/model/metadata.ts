/**
 * Model metadata carried (authenticated) in the package header and in the signed statement:
 * what the model is, which version, and how to feed it.
 */
import { z } from 'zod';
import { EdgeguardError } from '../errors/index.ts';

/** Element types ONNX Runtime takes for a tensor input (string tensors are not model inputs here). */
export const TENSOR_DTYPES = [
  'float32',
  'float16',
  'float64',
  'int8',
  'uint8',
  'int16',
  'uint16',
  'int32',
  'uint32',
  'int64',
  'uint64',
  'bool',
] as const;

/** The values an input may take: anything outside is refused before the model sees it. */
const valueRangeSchema = z
  .object({ min: z.number(), max: z.number() })
  .strict()
  .refine((r) => r.min <= r.max, { message: 'range.min must not exceed range.max' });

const tensorSchema = z
  .object({
    name: z.string().min(1).max(256),
    dtype: z.enum(TENSOR_DTYPES).default('float32'),
    /** Dimensions; a string or -1 marks a symbolic (dynamic) dimension. */
    shape: z
      .array(z.union([z.number().int().min(-1), z.string().max(64)]))
      .max(16)
      .default([]),
    /** For inputs: every value must lie within min..max (inclusive). */
    range: valueRangeSchema.optional(),
    /** For classifier outputs: one label per class index. */
    labels: z.array(z.string().max(128)).max(100_000).optional(),
  })
  .strict();

const imagePreprocessingSchema = z
  .object({
    type: z.literal('image'),
    colorSpace: z.enum(['grayscale', 'rgb']),
    width: z.number().int().min(1).max(8192),
    height: z.number().int().min(1).max(8192),
    layout: z.enum(['NCHW', 'NHWC']).default('NCHW'),
    /** Each pixel (0..255) is multiplied by scale, then (x - mean[c]) / std[c]. */
    scale: z
      .number()
      .positive()
      .default(1 / 255),
    mean: z.array(z.number()).max(4).optional(),
    std: z.array(z.number().positive()).max(4).optional(),
    /** How an input of another size is brought to width x height (sharp's fit). */
    fit: z.enum(['fill', 'contain', 'cover']).default('fill'),
  })
  .strict();

export const modelMetadataSchema = z
  .object({
    name: z
      .string()
      .min(1)
      .max(128)
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'letters, digits, ".", "_" and "-" only'),
    /** Monotonically increasing release number: the device refuses to go back. */
    version: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
    /** Free-form human label, e.g. "3.1-rc2" or a git revision. */
    label: z.string().max(256).optional(),
    format: z.enum(['onnx', 'opaque']),
    inputs: z.array(tensorSchema).max(64).default([]),
    outputs: z.array(tensorSchema).max(64).default([]),
    preprocessing: imagePreprocessingSchema.optional(),
  })
  .strict();

export type ModelMetadata = z.infer<typeof modelMetadataSchema>;
export type ModelMetadataInput = z.input<typeof modelMetadataSchema>;
export type ImagePreprocessing = z.infer<typeof imagePreprocessingSchema>;
export type TensorDescription = z.infer<typeof tensorSchema>;
export type TensorDtype = (typeof TENSOR_DTYPES)[number];
export type ValueRange = z.infer<typeof valueRangeSchema>;

export function parseModelMetadata(value: unknown, where = 'model metadata'): ModelMetadata {
  const r = modelMetadataSchema.safeParse(value);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new EdgeguardError(
      'EG_FORMAT',
      `${where} is invalid: ${issue?.path.join('.') || 'root'}: ${issue?.message}.`,
    );
  }
  return r.data;
}
