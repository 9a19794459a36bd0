/**
 * Image bytes -> input tensor, entirely in memory (sharp/libvips decoding from a buffer; no
 * temporary files), as the package metadata's preprocessing block declares.
 */
import sharp, { type Metadata, type OutputInfo } from 'sharp';
import { EdgeguardError } from '../errors/index.ts';
import type { ImagePreprocessing } from '../model/index.ts';

sharp.cache(false);

/** Refuse decompression bombs: no image above this many pixels is decoded. */
export const MAX_INPUT_PIXELS = 40_000_000;

export interface Tensor {
  data: Float32Array;
  dims: number[];
}

export interface DecodedImage {
  /** Pixels after colour conversion and resizing, interleaved (HWC), 0..255. */
  pixels: Uint8Array;
  width: number;
  height: number;
  channels: number;
  /** What the input was before resizing. */
  source: { format: string; width: number; height: number };
}

export async function decodeImage(bytes: Uint8Array, pre: ImagePreprocessing): Promise<DecodedImage> {
  let meta: Metadata;
  try {
    meta = await sharp(bytes, { limitInputPixels: MAX_INPUT_PIXELS, failOn: 'error' }).metadata();
  } catch (e) {
    throw new EdgeguardError(
      'EG_INPUT',
      'the input is not an image that can be decoded (PNG, JPEG, WebP, GIF or TIFF).',
      { cause: e },
    );
  }
  if (!meta.format || !['png', 'jpeg', 'webp', 'gif', 'tiff'].includes(meta.format)) {
    throw new EdgeguardError('EG_INPUT', `input format ${meta.format ?? 'unknown'} is not accepted; send PNG or JPEG.`);
  }
  let img = sharp(bytes, { limitInputPixels: MAX_INPUT_PIXELS, failOn: 'error' }).flatten({ background: '#000000' });
  img = pre.colorSpace === 'grayscale' ? img.grayscale() : img.toColourspace('srgb');
  img = img.resize(pre.width, pre.height, { fit: pre.fit, background: '#000000' });
  let out: { data: Buffer; info: OutputInfo };
  try {
    out = await img.raw().toBuffer({ resolveWithObject: true });
  } catch (e) {
    throw new EdgeguardError('EG_INPUT', 'the image could not be decoded; it is corrupt or truncated.', { cause: e });
  }
  const want = pre.colorSpace === 'grayscale' ? 1 : 3;
  let pixels: Uint8Array = out.data;
  if (out.info.channels !== want) pixels = selectChannels(out.data, out.info.channels, want);
  return {
    pixels,
    width: out.info.width,
    height: out.info.height,
    channels: want,
    source: { format: meta.format, width: meta.width ?? 0, height: meta.height ?? 0 },
  };
}

function selectChannels(data: Uint8Array, have: number, want: number): Uint8Array {
  const n = data.length / have;
  const out = new Uint8Array(n * want);
  for (let i = 0; i < n; i++)
    for (let c = 0; c < want; c++) out[i * want + c] = data[i * have + Math.min(c, have - 1)]!;
  return out;
}

/** Scale, normalise and lay out decoded pixels as the model expects. */
export function pixelsToTensor(
  img: Pick<DecodedImage, 'pixels' | 'width' | 'height' | 'channels'>,
  pre: ImagePreprocessing,
): Tensor {
  const { width: w, height: h, channels: c } = img;
  const data = new Float32Array(w * h * c);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let k = 0; k < c; k++) {
        let v = img.pixels[(y * w + x) * c + k]! * pre.scale;
        if (pre.mean) v -= pre.mean[k] ?? 0;
        if (pre.std) v /= pre.std[k] ?? 1;
        const at = pre.layout === 'NCHW' ? k * w * h + y * w + x : (y * w + x) * c + k;
        data[at] = v;
      }
    }
  }
  return { data, dims: pre.layout === 'NCHW' ? [1, c, h, w] : [1, h, w, c] };
}

export async function imageToTensor(bytes: Uint8Array, pre: ImagePreprocessing): Promise<Tensor> {
  const img = await decodeImage(bytes, pre);
  try {
    return pixelsToTensor(img, pre);
  } finally {
    img.pixels.fill(0);
  }
}
