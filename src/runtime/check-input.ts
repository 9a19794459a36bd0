/**
 * One input -> one verdict, without HTTP: an image (PNG/JPEG/WebP bytes, decoded in memory as the
 * model's preprocessing declares) or a tensor (1 x C x H x W values in 0..1) goes through the
 * guard. Everything derived from the input is wiped; the input itself belongs to the caller.
 */
import { performance } from 'node:perf_hooks';
import { EdgeguardError } from '../errors/index.ts';
import { decodeImage, pixelsToTensor } from '../inference/index.ts';
import type { GuardImage, GuardResult, PlanarShape } from '../guard/index.ts';
import type { GuardTarget } from './guarded-model.ts';

export type GuardedInput =
  /** `format`, when given, is checked against the bytes' magic (what the sender declared). */
  | { kind: 'image'; bytes: Buffer; format?: 'image/png' | 'image/jpeg' }
  | { kind: 'tensor'; dims: readonly number[]; data: readonly number[] };

export interface InputVerdict {
  result: GuardResult;
  /** Time to decode the input into the model's tensor, ms. */
  decodeMs: number;
}

/** Anything that holds input-derived values and can be overwritten. */
export interface Wipeable {
  fill(value: number): unknown;
}

const MAGIC = {
  'image/png': { bytes: Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), name: 'PNG' },
  'image/jpeg': { bytes: Buffer.from([0xff, 0xd8, 0xff]), name: 'JPEG' },
} as const;

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
): Promise<InputVerdict & { tensor: Float32Array }> {
  const t0 = performance.now();
  const { tensor, image } =
    input.kind === 'image'
      ? await decodeImageInput(target, input, wipeLater)
      : tensorInput(target.shape, input, wipeLater);
  const decodeMs = performance.now() - t0;
  const result = await target.guard.check({ tensor, image });
  return { result, decodeMs, tensor };
}

async function decodeImageInput(
  target: GuardTarget,
  input: Extract<GuardedInput, { kind: 'image' }>,
  wipeLater: Wipeable[],
): Promise<{ tensor: Float32Array; image: GuardImage }> {
  if (input.format) {
    const magic = MAGIC[input.format];
    if (input.bytes.length < magic.bytes.length || !input.bytes.subarray(0, magic.bytes.length).equals(magic.bytes))
      throw new EdgeguardError(
        'EG_INPUT',
        `the body is not a ${magic.name} image (its first bytes do not match ${input.format}).`,
      );
  }
  const image = await decodeImage(input.bytes, target.pre);
  wipeLater.push(image.pixels);
  const tensor = pixelsToTensor(image, target.pre).data;
  wipeLater.push(tensor);
  return { tensor, image };
}

/** The tensor's dims must be exactly the model's; each value finite and within 0..1. */
function tensorInput(
  shape: PlanarShape,
  input: Extract<GuardedInput, { kind: 'tensor' }>,
  wipeLater: Wipeable[],
): { tensor: Float32Array; image: GuardImage } {
  const expected = [1, shape.channels, shape.height, shape.width];
  const { dims, data } = input;
  if (dims.length !== expected.length || dims.some((d, i) => d !== expected[i]))
    throw new EdgeguardError(
      'EG_INPUT',
      `the tensor has dims [${dims.join(',')}]; the model takes [${expected.join(',')}].`,
    );
  const n = expected.reduce((a, b) => a * b, 1);
  if (data.length !== n)
    throw new EdgeguardError(
      'EG_INPUT',
      `the tensor has ${data.length} values; dims [${expected.join(',')}] need ${n}.`,
    );
  const tensor = new Float32Array(n);
  wipeLater.push(tensor);
  for (let i = 0; i < n; i++) {
    const v = data[i]!;
    if (!Number.isFinite(v) || v < 0 || v > 1)
      throw new EdgeguardError(
        'EG_INPUT',
        `tensor value ${i} is ${v}; values must be finite and within 0..1 (pixel / 255).`,
      );
    tensor[i] = v;
  }
  const image = tensorImage(tensor, shape);
  wipeLater.push(image.pixels);
  return { tensor, image };
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
