/**
 * One input -> one verdict, without HTTP: an image (PNG/JPEG/WebP bytes, decoded in memory as the
 * model's preprocessing declares) or tensors (checked against the model's declared inputs: names,
 * dtypes, dims, value ranges; 0..1 for an image model that declares none) go through the guard.
 * Everything derived from the input is wiped; the input itself belongs to the caller.
 */
import { performance } from 'node:perf_hooks';
import { EdgeguardError } from '../errors/index.ts';
import {
  checkModelInputs,
  defaultInputRange,
  decodeImage,
  MAX_INPUT_PIXELS,
  pixelsToTensor,
  type ModelInput,
  type SuppliedTensor,
  wipeModelInputs,
} from '../inference/index.ts';
import type { TensorDescription } from '../model/index.ts';
import type { GuardImage, GuardResult, PlanarShape } from '../guard/index.ts';
import type { GuardTarget } from './guarded-model.ts';
import { checkImageStructure } from './image-structure.ts';

export type GuardedInput =
  /** `format`, when given, is what the sender declared: the bytes' structure is checked against it. */
  | { kind: 'image'; bytes: Buffer; format?: 'image/png' | 'image/jpeg' }
  | { kind: 'tensors'; tensors: readonly SuppliedTensor[] };

export interface InputVerdict {
  result: GuardResult;
  /** Time to decode the input into the model's tensor, ms. */
  decodeMs: number;
}

/** Anything that holds input-derived values and can be overwritten. */
export interface Wipeable {
  fill(value: number): unknown;
}

/** Decode and check one input; every buffer derived from it is wiped before returning. */
export async function checkInput(target: GuardTarget, input: GuardedInput): Promise<InputVerdict> {
  const derived: Wipeable[] = [];
  try {
    const { result, decodeMs } = await checkInputKeeping(target, input, derived);
    return { result, decodeMs };
  } finally {
    for (const b of derived) b.fill(0);
  }
}

/**
 * As checkInput, but the buffers derived from the input go to `wipeLater` for the caller to wipe
 * (it may still need the model tensor, e.g. to seal the input for review).
 */
export async function checkInputKeeping(
  target: GuardTarget,
  input: GuardedInput,
  wipeLater: Wipeable[],
): Promise<InputVerdict & { inputs: ModelInput[] }> {
  const t0 = performance.now();
  const { tensor, image, inputs } =
    input.kind === 'image' ? await decodeImageInput(target, input, wipeLater) : tensorInput(target, input, wipeLater);
  const decodeMs = performance.now() - t0;
  const result = await target.guard.check({
    tensor,
    ...(image ? { image } : {}),
    ...(target.shape ? {} : { inputs }),
  });
  return { result, decodeMs, inputs };
}

async function decodeImageInput(
  target: GuardTarget,
  input: Extract<GuardedInput, { kind: 'image' }>,
  wipeLater: Wipeable[],
): Promise<{ tensor: Float32Array; image: GuardImage; inputs: ModelInput[] }> {
  const { pre, shape } = target;
  if (!pre || !shape)
    throw new EdgeguardError(
      'EG_INPUT',
      'the model declares no image preprocessing; send its inputs as a tensor (application/json or .npy).',
    );
  if (input.format) {
    const invalid = checkImageStructure(input.format, input.bytes, MAX_INPUT_PIXELS);
    if (invalid) throw invalid;
  }
  const image = await decodeImage(input.bytes, pre);
  wipeLater.push(image.pixels);
  const { data: tensor, dims } = pixelsToTensor(image, pre);
  wipeLater.push(tensor);
  const name = target.inputs?.[0]?.name ?? 'input';
  return { tensor, image, inputs: [{ name, dtype: 'float32', dims, data: tensor }] };
}

/**
 * Tensors checked against the primary's declared inputs (names, dtypes, dims, ranges). For an
 * image model the one input also becomes the 8-bit image the guard's statistics read.
 */
function tensorInput(
  target: GuardTarget,
  input: Extract<GuardedInput, { kind: 'tensors' }>,
  wipeLater: Wipeable[],
): { tensor: Float32Array; image?: GuardImage; inputs: ModelInput[] } {
  const { shape } = target;
  const declared = target.inputs?.length ? target.inputs : shape ? [planarInput(shape)] : [];
  const inputs = checkModelInputs(declared, input.tensors, defaultInputRange(target.pre));
  wipeLater.push({ fill: () => wipeModelInputs(inputs) });
  if (!shape) return { tensor: new Float32Array(0), inputs };
  const tensor = inputs[0]!.data;
  if (inputs.length !== 1 || !(tensor instanceof Float32Array))
    throw new EdgeguardError('EG_CONFIG', 'an image model must take one float32 input; check its metadata.');
  const image = tensorImage(tensor, shape);
  wipeLater.push(image.pixels);
  return { tensor, image, inputs };
}

/** An image model whose metadata declares no inputs takes one 1 x C x H x W tensor. */
function planarInput(shape: PlanarShape): TensorDescription {
  return { name: 'input', dtype: 'float32', shape: [1, shape.channels, shape.height, shape.width] };
}

/** A planar 0..1 tensor (C x H x W) as the 8-bit interleaved image the guard's statistics read. */
function tensorImage(data: Float32Array, shape: PlanarShape): GuardImage {
  const { channels: c, height: h, width: w } = shape;
  const pixels = new Uint8Array(c * h * w);
  for (let k = 0; k < c; k++) {
    for (let i = 0; i < h * w; i++)
      pixels[i * c + k] = Math.min(255, Math.max(0, Math.round(data[k * h * w + i]! * 255)));
  }
  return { pixels, width: w, height: h, channels: c, source: { format: 'tensor', width: w, height: h } };
}
