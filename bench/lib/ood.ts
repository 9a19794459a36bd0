/**
 * Out-of-distribution image sets for the guard evaluation, 28x28 values in 0..1, generated
 * deterministically (seeded PRNG): noise as in Hendrycks & Gimpel (ICLR 2017: Gaussian noise
 * N(0.5, 1) clipped to [0, 1], uniform noise U[0, 1]), inverted digits, blank (constant) images,
 * heavily blurred digits, and letters and shapes drawn with strokes like handwriting.
 */
import { mulberry32 } from '../../scripts/lib/mnist-split.ts';

const SIDE = 28;
const N = SIDE * SIDE;

function gaussian(rand: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
}

export function gaussianNoise(count: number, seed: number): Float32Array[] {
  const r = mulberry32(seed);
  return Array.from({ length: count }, () =>
    Float32Array.from({ length: N }, () => Math.min(1, Math.max(0, 0.5 + gaussian(r)))),
  );
}

export function uniformNoise(count: number, seed: number): Float32Array[] {
  const r = mulberry32(seed);
  return Array.from({ length: count }, () => Float32Array.from({ length: N }, () => r()));
}

export function inverted(digits: Float32Array[]): Float32Array[] {
  return digits.map((d) => d.map((v) => 1 - v));
}

/** Constant images from black to white. */
export function blank(count: number): Float32Array[] {
  return Array.from({ length: count }, (_, i) => new Float32Array(N).fill(count === 1 ? 0 : i / (count - 1)));
}

/** Separable Gaussian blur with the given sigma (edges clamped). */
export function gaussianBlur(img: Float32Array, sigma: number): Float32Array {
  const radius = Math.ceil(3 * sigma);
  const k = Array.from({ length: 2 * radius + 1 }, (_, i) => Math.exp(-((i - radius) ** 2) / (2 * sigma * sigma)));
  const sum = k.reduce((a, b) => a + b, 0);
  const kernel = k.map((v) => v / sum);
  const pass = (src: Float32Array, horizontal: boolean) => {
    const out = new Float32Array(N);
    for (let y = 0; y < SIDE; y++)
      for (let x = 0; x < SIDE; x++) {
        let acc = 0;
        for (let i = -radius; i <= radius; i++) {
          const xx = horizontal ? Math.min(SIDE - 1, Math.max(0, x + i)) : x;
          const yy = horizontal ? y : Math.min(SIDE - 1, Math.max(0, y + i));
          acc += kernel[i + radius]! * src[yy * SIDE + xx]!;
        }
        out[y * SIDE + x] = acc;
      }
    return out;
  };
  return pass(pass(img, true), false);
}

export function heavyBlur(digits: Float32Array[], sigma = 2.5): Float32Array[] {
  return digits.map((d) => gaussianBlur(d, sigma));
}

type Segment = [number, number, number, number];

/** Stroke letters on a unit square (x right, y down), straight segments only. */
const LETTERS: Record<string, Segment[]> = {
  A: [
    [0.1, 1, 0.5, 0],
    [0.5, 0, 0.9, 1],
    [0.28, 0.6, 0.72, 0.6],
  ],
  E: [
    [0.2, 0, 0.2, 1],
    [0.2, 0, 0.85, 0],
    [0.2, 0.5, 0.7, 0.5],
    [0.2, 1, 0.85, 1],
  ],
  F: [
    [0.2, 0, 0.2, 1],
    [0.2, 0, 0.85, 0],
    [0.2, 0.5, 0.7, 0.5],
  ],
  H: [
    [0.15, 0, 0.15, 1],
    [0.85, 0, 0.85, 1],
    [0.15, 0.5, 0.85, 0.5],
  ],
  K: [
    [0.2, 0, 0.2, 1],
    [0.85, 0, 0.2, 0.55],
    [0.4, 0.4, 0.85, 1],
  ],
  M: [
    [0.1, 1, 0.1, 0],
    [0.1, 0, 0.5, 0.6],
    [0.5, 0.6, 0.9, 0],
    [0.9, 0, 0.9, 1],
  ],
  N: [
    [0.15, 1, 0.15, 0],
    [0.15, 0, 0.85, 1],
    [0.85, 1, 0.85, 0],
  ],
  T: [
    [0.1, 0, 0.9, 0],
    [0.5, 0, 0.5, 1],
  ],
  V: [
    [0.1, 0, 0.5, 1],
    [0.5, 1, 0.9, 0],
  ],
  W: [
    [0.05, 0, 0.25, 1],
    [0.25, 1, 0.5, 0.4],
    [0.5, 0.4, 0.75, 1],
    [0.75, 1, 0.95, 0],
  ],
  X: [
    [0.1, 0, 0.9, 1],
    [0.9, 0, 0.1, 1],
  ],
  Y: [
    [0.1, 0, 0.5, 0.5],
    [0.9, 0, 0.5, 0.5],
    [0.5, 0.5, 0.5, 1],
  ],
  Z: [
    [0.1, 0, 0.9, 0],
    [0.9, 0, 0.1, 1],
    [0.1, 1, 0.9, 1],
  ],
};

function distToSegment(px: number, py: number, [x1, y1, x2, y2]: Segment): number {
  const dx = x2 - x1;
  const dy = y2 - y1;
  const len2 = dx * dx + dy * dy;
  const t = len2 === 0 ? 0 : Math.max(0, Math.min(1, ((px - x1) * dx + (py - y1) * dy) / len2));
  return Math.hypot(px - (x1 + t * dx), py - (y1 + t * dy));
}

/** Rasterise strokes (pixel coordinates) with an anti-aliased pen, then soften like a scan. */
function strokes(distance: (x: number, y: number) => number, pen: number): Float32Array {
  const img = new Float32Array(N);
  for (let y = 0; y < SIDE; y++)
    for (let x = 0; x < SIDE; x++) {
      img[y * SIDE + x] = Math.max(0, Math.min(1, pen / 2 + 0.5 - distance(x + 0.5, y + 0.5)));
    }
  return gaussianBlur(img, 0.5).map((v) => Math.min(1, v * 1.15));
}

/** Letters drawn in a 20x20 box centred like MNIST, with random size, slant, offset and pen. */
export function drawnLetters(count: number, seed: number): Float32Array[] {
  const r = mulberry32(seed);
  const keys = Object.keys(LETTERS);
  return Array.from({ length: count }, (_, i) => {
    const segs = LETTERS[keys[i % keys.length]!]!;
    const w = 12 + 6 * r();
    const h = 16 + 4 * r();
    const slant = (r() - 0.5) * 0.4;
    const ox = 14 - w / 2 + (r() - 0.5) * 3;
    const oy = 14 - h / 2 + (r() - 0.5) * 3;
    const pen = 1.6 + 1.2 * r();
    const px = segs.map(
      ([a, b, c, d]) =>
        [ox + (a + slant * (1 - b)) * w, oy + b * h, ox + (c + slant * (1 - d)) * w, oy + d * h] as Segment,
    );
    return strokes((x, y) => Math.min(...px.map((s) => distToSegment(x, y, s))), pen);
  });
}

/** Circles, rectangles, triangles and crosses, outlined, at random sizes and positions. */
export function drawnShapes(count: number, seed: number): Float32Array[] {
  const r = mulberry32(seed);
  return Array.from({ length: count }, (_, i) => {
    const cx = 14 + (r() - 0.5) * 4;
    const cy = 14 + (r() - 0.5) * 4;
    const size = 6 + 4 * r();
    const pen = 1.6 + 1.2 * r();
    const kind = i % 4;
    if (kind === 0) return strokes((x, y) => Math.abs(Math.hypot(x - cx, y - cy) - size), pen);
    let segs: Segment[];
    if (kind === 1) {
      const w = size * (0.7 + 0.6 * r());
      segs = [
        [cx - w, cy - size, cx + w, cy - size],
        [cx + w, cy - size, cx + w, cy + size],
        [cx + w, cy + size, cx - w, cy + size],
        [cx - w, cy + size, cx - w, cy - size],
      ];
    } else if (kind === 2) {
      segs = [
        [cx, cy - size, cx + size, cy + size],
        [cx + size, cy + size, cx - size, cy + size],
        [cx - size, cy + size, cx, cy - size],
      ];
    } else {
      segs = [
        [cx - size, cy, cx + size, cy],
        [cx, cy - size, cx, cy + size],
      ];
    }
    return strokes((x, y) => Math.min(...segs.map((s) => distToSegment(x, y, s))), pen);
  });
}
