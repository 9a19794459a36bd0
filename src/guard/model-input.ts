/**
 * What the guard needs to know about a model's input, derived from the package metadata's
 * preprocessing block: the planar shape for the median squeezer, and a check that the tensor is
 * on the 0..1 scale that bit-depth reduction assumes (pixel * 1/255, no mean/std normalisation).
 */
import { EdgeguardError } from '../errors/index.ts';
import type { ImagePreprocessing } from '../model/index.ts';
import type { PlanarShape } from './squeeze.ts';

export function guardInputShape(pre: ImagePreprocessing | undefined, what = 'the model'): PlanarShape {
  if (!pre)
    throw new EdgeguardError(
      'EG_CONFIG',
      `${what} declares no image preprocessing; the guard needs it to decode and squeeze inputs.`,
    );
  if (Math.abs(pre.scale - 1 / 255) > 1e-9 || pre.mean || pre.std) {
    throw new EdgeguardError(
      'EG_CONFIG',
      `${what} normalises pixels (scale ${pre.scale}${pre.mean ? ', mean' : ''}${pre.std ? ', std' : ''}); feature squeezing needs inputs on the 0..1 scale (scale 1/255, no mean/std).`,
    );
  }
  const channels = pre.colorSpace === 'grayscale' ? 1 : 3;
  if (channels > 1 && pre.layout !== 'NCHW') {
    throw new EdgeguardError('EG_CONFIG', `${what} takes NHWC colour input; the guard's squeezers expect NCHW planes.`);
  }
  return { channels, height: pre.height, width: pre.width };
}
