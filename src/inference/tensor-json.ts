/**
 * The JSON tensor forms (docs/formats.md, "Tensor inputs"), read under a strict schema: numbers
 * only (no numeric strings, no null, no nested arrays), integer dims, no unknown keys.
 *
 *   {"tensor": {"dims": [1, 12], "data": [0.1, ...]}}                     one input
 *   {"inputs": {"NAME": {"dims": [..], "data": [..]}, ...}}               one or several, by name
 */
import { z } from 'zod';
import { EdgeguardError } from '../errors/index.ts';
import { MAX_TENSOR_RANK, MAX_TENSOR_VALUES, type SuppliedTensor } from './tensor.ts';

const tensorSchema = z
  .object({
    dims: z.array(z.number().int().min(0).max(MAX_TENSOR_VALUES)).max(MAX_TENSOR_RANK),
    data: z.array(z.number()).max(MAX_TENSOR_VALUES),
  })
  .strict();

const tensorBodySchema = z.union([
  z.object({ tensor: tensorSchema }).strict(),
  z
    .object({
      inputs: z
        .record(z.string().min(1).max(256), tensorSchema)
        .refine((r) => Object.keys(r).length >= 1 && Object.keys(r).length <= 64, '1 to 64 inputs'),
    })
    .strict(),
]);

/** The same shapes as JSON Schema, for OpenAPI documents (the check itself is tensorBodySchema). */
export const TENSOR_BODY_JSON_SCHEMA = z.toJSONSchema(tensorBodySchema, { io: 'input' });

/** Parse an already JSON-decoded value; EG_FORMAT names the first offending path. */
export function parseTensorJson(value: unknown, where = 'the tensor JSON'): SuppliedTensor[] {
  const r = tensorBodySchema.safeParse(value);
  if (!r.success) {
    const issue = r.error.issues[0];
    const path = issue?.path.length ? issue.path.join('.') : 'root';
    throw new EdgeguardError(
      'EG_FORMAT',
      `${where} is invalid at ${path}: ${issue?.message}; send {"tensor":{"dims":[..],"data":[numbers]}} or {"inputs":{"NAME":{"dims":[..],"data":[numbers]}}}.`,
    );
  }
  if ('tensor' in r.data) return [{ dims: r.data.tensor.dims, values: r.data.tensor.data }];
  return Object.entries(r.data.inputs).map(([name, t]) => ({ name, dims: t.dims, values: t.data }));
}
