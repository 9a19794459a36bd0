/**
 * Input statistics of one decoded image, computed in memory from the pixels the model will see
 * (after colour conversion and resizing), plus the source's dimensions and format. The input
 * profile (profile.ts) bounds each of them; no standard thresholds exist, so every bound is
 * calibrated on legitimate inputs (calibrate.ts).
 *
 * All intensity statistics use luminance on a 0..1 scale (BT.601 weights for colour pixels).
 */

/** A decoded image: interleaved 8-bit pixels (HWC) and where they came from. */
export interface GuardImage {
  pixels: Uint8Array;
  width: number;
  height: number;
  channels: number;
  source: { format: string; width: number; height: number };
}

export const NUMERIC_STATISTICS = ['brightness', 'contrast', 'noise', 'blur', 'saturation', 'entropy'] as const;
export type NumericStatistic = (typeof NUMERIC_STATISTICS)[number];

export interface InputStatistics {
  /** Mean luminance, 0..1. */
  brightness: number;
  /** Spread between the 1st and 99th percentiles of luminance, 0..1. */
  contrast: number;
  /** Immerkaer's estimate of the standard deviation of additive Gaussian noise, 0..1 scale. */
  noise: number;
  /** Variance of the Laplacian (4-neighbour kernel), 0..1 scale; low means blurred. */
  blur: number;
  /** Fraction of pixels clipped at black or white (0 or 255 in every channel). */
  saturation: number;
  /** Shannon entropy of the 256-bin luminance histogram, bits (0..8). */
  entropy: number;
  width: number;
  height: number;
  format: string;
}

/** Luminance of every pixel, 0..255 (BT.601 luma for 3+ channels; the channel itself for 1-2). */
export function luminance(img: Pick<GuardImage, 'pixels' | 'width' | 'height' | 'channels'>): Float32Array {
  const n = img.width * img.height;
  const c = img.channels;
  if (img.pixels.length !== n * c) throw new RangeError(`expected ${n * c} pixel bytes, got ${img.pixels.length}`);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    if (c >= 3) {
      out[i] = 0.299 * img.pixels[i * c]! + 0.587 * img.pixels[i * c + 1]! + 0.114 * img.pixels[i * c + 2]!;
    } else {
      out[i] = img.pixels[i * c]!;
    }
  }
  return out;
}

function percentileFromHistogram(hist: Uint32Array, total: number, p: number): number {
  // Nearest-rank percentile: the smallest value v with at least ceil(p * total) samples <= v.
  const rank = Math.max(1, Math.ceil(p * total));
  let seen = 0;
  for (let v = 0; v < hist.length; v++) {
    seen += hist[v]!;
    if (seen >= rank) return v;
  }
  return hist.length - 1;
}

/**
 * Immerkaer, "Fast Noise Variance Estimation", CVIU 64(2), 1996: convolve with the difference of
 * two Laplacians N = [1 -2 1; -2 4 -2; 1 -2 1] (which cancels image structure of second order)
 * and take sigma = sqrt(pi/2) / (6 (W-2)(H-2)) * sum |I * N| over the interior pixels.
 */
export function immerkaerNoise(lum: Float32Array | Uint8Array, width: number, height: number): number {
  return structure(lum, width, height).noise;
}

/**
 * Blur as the variance of the Laplacian (Pech-Pacheco et al., ICPR 2000): the response of
 * [0 1 0; 1 -4 1; 0 1 0] over the interior pixels; sharp edges give a large variance.
 */
export function laplacianVariance(lum: Float32Array | Uint8Array, width: number, height: number): number {
  return structure(lum, width, height).blur;
}

/** Both 3x3 statistics above in one pass over the interior pixels (they read the same neighbours). */
function structure(lum: Float32Array | Uint8Array, width: number, height: number): { noise: number; blur: number } {
  if (width < 3 || height < 3) return { noise: 0, blur: 0 };
  let abs = 0;
  let sum = 0;
  let sumSq = 0;
  let n = 0;
  for (let y = 1; y < height - 1; y++) {
    for (let x = 1; x < width - 1; x++) {
      const mid = y * width + x;
      const up = mid - width;
      const down = mid + width;
      const ul = lum[up - 1]!;
      const u = lum[up]!;
      const ur = lum[up + 1]!;
      const l = lum[mid - 1]!;
      const c = lum[mid]!;
      const r = lum[mid + 1]!;
      const dl = lum[down - 1]!;
      const d = lum[down]!;
      const dr = lum[down + 1]!;
      abs += Math.abs(ul - 2 * u + ur - 2 * l + 4 * c - 2 * r + dl - 2 * d + dr);
      const v = (u + d + l + r - 4 * c) / 255;
      sum += v;
      sumSq += v * v;
      n++;
    }
  }
  const mean = sum / n;
  return {
    noise: (Math.sqrt(Math.PI / 2) * abs) / (6 * (width - 2) * (height - 2)) / 255,
    blur: Math.max(0, sumSq / n - mean * mean),
  };
}

/** Every statistic of one image. */
export function computeStatistics(img: GuardImage): InputStatistics {
  if (img.pixels.length !== img.width * img.height * img.channels)
    throw new RangeError(`expected ${img.width * img.height * img.channels} pixel bytes, got ${img.pixels.length}`);
  // One channel is its own luminance: read the bytes, no copy (the same values, so the same results).
  const grey = img.channels === 1;
  const lum = grey ? undefined : luminance(img);
  const n = img.width * img.height;
  const { hist, sum } = grey ? histogramOfBytes(img.pixels) : histogramOfLuminance(lum!);
  let entropy = 0;
  for (let v = 0; v < 256; v++) {
    const p = hist[v]! / n;
    if (p > 0) entropy -= p * Math.log2(p);
  }
  const clipped = img.channels === 1 ? hist[0]! + hist[255]! : clippedPixels(img);
  return {
    brightness: n === 0 ? 0 : sum / n / 255,
    contrast: n === 0 ? 0 : (percentileFromHistogram(hist, n, 0.99) - percentileFromHistogram(hist, n, 0.01)) / 255,
    ...structure(grey ? img.pixels : lum!, img.width, img.height),
    saturation: n === 0 ? 0 : clipped / n,
    entropy: entropy === 0 ? 0 : entropy, // no -0
    width: img.source.width,
    height: img.source.height,
    format: img.source.format,
  };
}

/** The 256-bin histogram and sum of one-channel pixels (their own luminance, already whole). */
function histogramOfBytes(pixels: Uint8Array): { hist: Uint32Array; sum: number } {
  const hist = new Uint32Array(256);
  let sum = 0;
  for (let i = 0; i < pixels.length; i++) {
    const v = pixels[i]!;
    sum += v;
    hist[v]!++;
  }
  return { hist, sum };
}

function histogramOfLuminance(lum: Float32Array): { hist: Uint32Array; sum: number } {
  const hist = new Uint32Array(256);
  let sum = 0;
  for (let i = 0; i < lum.length; i++) {
    const v = lum[i]!;
    sum += v;
    hist[Math.min(255, Math.max(0, Math.round(v)))]!++;
  }
  return { hist, sum };
}

/** Pixels clipped at black or white in every channel. */
function clippedPixels(img: GuardImage): number {
  const c = img.channels;
  const n = img.width * img.height;
  let clipped = 0;
  for (let i = 0; i < n; i++) {
    let lo = true;
    let hi = true;
    for (let k = 0; k < c; k++) {
      const v = img.pixels[i * c + k]!;
      if (v !== 0) lo = false;
      if (v !== 255) hi = false;
    }
    if (lo || hi) clipped++;
  }
  return clipped;
}

/** A 0..1 float image (the model's own scale) as an 8-bit greyscale GuardImage. */
export function floatImageToGuardImage(
  values: Float32Array,
  width: number,
  height: number,
  format = 'tensor',
): GuardImage {
  if (values.length !== width * height) throw new RangeError(`expected ${width * height} values, got ${values.length}`);
  const pixels = new Uint8Array(values.length);
  for (let i = 0; i < values.length; i++) pixels[i] = Math.min(255, Math.max(0, Math.round(values[i]! * 255)));
  return { pixels, width, height, channels: 1, source: { format, width, height } };
}
