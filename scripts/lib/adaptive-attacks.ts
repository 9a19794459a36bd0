/**
 * Adaptive attacks on the guarded demo models: BIM variants by an attacker who knows the guard
 * (Carlini and Wagner, AISec 2017; Tramer et al., "On Adaptive Attacks to Adversarial Example
 * Defenses", NeurIPS 2020: attack the whole defended system, not the bare model).
 *
 *   - validation-aware: only stroke pixels (clean value > 0) move, and after every step the
 *     perturbation is shrunk (bisection on its scale) until all six input statistics of the 8-bit
 *     image lie inside the attacker's copy of the calibrated bounds: validation never fires;
 *   - squeezing-aware: the loss is summed over the input and its squeezed copies, with the
 *     squeezers' gradient taken as the identity (BPDA, Athalye et al., ICML 2018);
 *   - ensemble-aware: the loss is summed over the primary and the ensemble model.
 *
 * Every variant is targeted at the class the primary ranks second on the clean digit, so that all
 * views (models, squeezed copies) are pushed to the SAME wrong answer with high confidence: an
 * untargeted attack lets the views disagree, which the ensemble and squeezing stages see.
 * Models are TensorFlow.js models with a linear head (logits), see loadTfFromOnnx.
 */
import * as tf from '@tensorflow/tfjs';
import { medianFilter, reduceBitDepth, type SqueezeSettings } from '../../src/guard/index.ts';
import { MNIST_PIXELS } from './mnist-split.ts';

const SHAPE = { channels: 1, height: 28, width: 28 } as const;

export interface AdaptiveAttack {
  /** Logit models whose losses are summed (primary first). */
  models: tf.LayersModel[];
  eps: number;
  steps: number;
  /** Also attack the guard's squeezed copies (BPDA): bit-depth reduction and the median filter. */
  squeezeAware?: SqueezeSettings;
  /**
   * Whether an 8-bit-rounded candidate passes the attacker's copy of input validation; absent, the
   * perturbation is not confined (a plain L-infinity attack on every pixel).
   */
  passesValidation?: (pixels: Float32Array) => boolean;
}

/** Sum over models and views of the cross-entropy towards `targets`; its input gradient, flat. */
function targetedGradient(models: tf.LayersModel[], views: Float32Array, n: number, targets: number[]): Float32Array {
  return tf.tidy(() => {
    const x = tf.tensor4d(views, [views.length / MNIST_PIXELS, 28, 28, 1]);
    const reps = views.length / MNIST_PIXELS / n;
    const y = tf.oneHot(tf.tensor1d(Array.from({ length: reps }, () => targets).flat(), 'int32'), 10).toFloat();
    const g = tf.grad((input: tf.Tensor) =>
      tf.addN(
        models.map((m) =>
          tf.losses.softmaxCrossEntropy(y, m.apply(input) as tf.Tensor, undefined, 0, tf.Reduction.SUM),
        ),
      ),
    )(x);
    return (g.dataSync() as Float32Array).slice();
  });
}

/** The attacked views of a batch: the images, then (squeezing-aware) their two squeezed copies. */
function views(x: Float32Array, squeeze: SqueezeSettings | undefined): Float32Array {
  if (!squeeze) return x;
  const n = x.length / MNIST_PIXELS;
  const out = new Float32Array(x.length * 3);
  out.set(x, 0);
  for (let i = 0; i < n; i++) {
    const img = x.subarray(i * MNIST_PIXELS, (i + 1) * MNIST_PIXELS);
    out.set(reduceBitDepth(img, squeeze.bitDepth), x.length + i * MNIST_PIXELS);
    out.set(medianFilter(img, SHAPE, squeeze.medianSize), 2 * x.length + i * MNIST_PIXELS);
  }
  return out;
}

/** Sum of the gradient blocks of the views (BPDA: each squeezer's Jacobian taken as identity). */
function foldViews(g: Float32Array, size: number): Float32Array {
  const out = g.slice(0, size);
  for (let off = size; off < g.length; off += size) for (let i = 0; i < size; i++) out[i]! += g[off + i]!;
  return out;
}

function roundTo8Bit(x: Float32Array): Float32Array {
  return Float32Array.from(x, (v) => Math.round(Math.min(1, Math.max(0, v)) * 255) / 255);
}

/**
 * The largest scale c in [0, 1] (bisection, 6 halvings) for which clean + c * (candidate - clean),
 * rounded to 8 bits, passes validation; c = 0 is the clean digit, which passes by assumption.
 */
function confine(clean: Float32Array, candidate: Float32Array, passes: (p: Float32Array) => boolean): Float32Array {
  const at = (c: number) => roundTo8Bit(clean.map((v, i) => v + c * (candidate[i]! - v)));
  const full = at(1);
  if (passes(full)) return full;
  let lo = 0;
  let hi = 1;
  for (let k = 0; k < 6; k++) {
    const mid = (lo + hi) / 2;
    if (passes(at(mid))) lo = mid;
    else hi = mid;
  }
  return at(lo);
}

/** The class each clean digit's primary logits rank second (the attack's target). */
export function runnerUpTargets(primary: tf.LayersModel, images: Float32Array, labels: ArrayLike<number>): number[] {
  const logits = tf.tidy(
    () => (primary.predict(tf.tensor4d(images, [labels.length, 28, 28, 1])) as tf.Tensor).dataSync() as Float32Array,
  );
  return Array.from(labels, (label, i) => {
    let best = -1;
    for (let k = 0; k < 10; k++)
      if (k !== label && (best < 0 || logits[i * 10 + k]! > logits[i * 10 + best]!)) best = k;
    return best;
  });
}

/**
 * Targeted BIM with step eps/8 for `steps` steps, perturbing only stroke pixels when
 * `passesValidation` is given. Images are flat 784-value rows on the 0..1 scale; the result is
 * rounded to 8 bits, as the guard sees a PNG.
 */
export function adaptiveBim(a: AdaptiveAttack, images: Float32Array, targets: number[]): Float32Array {
  const n = targets.length;
  const alpha = a.eps / 8;
  const mask = a.passesValidation ? images.map((v) => (v > 0 ? 1 : 0)) : images.map(() => 1);
  let x: Float32Array = images.slice();
  for (let step = 0; step < a.steps; step++) {
    const g = foldViews(targetedGradient(a.models, views(x, a.squeezeAware), n, targets), x.length);
    const next = x.map((v, i) => {
      const moved = v - alpha * Math.sign(g[i]!) * mask[i]!; // descend: towards the target
      const lo = Math.max(0, images[i]! - a.eps);
      const hi = Math.min(1, images[i]! + a.eps);
      return Math.min(hi, Math.max(lo, moved));
    });
    x = a.passesValidation ? confineBatch(images, next, a.passesValidation) : next;
  }
  return roundTo8Bit(x);
}

function confineBatch(clean: Float32Array, next: Float32Array, passes: (p: Float32Array) => boolean): Float32Array {
  const out = new Float32Array(next.length);
  for (let off = 0; off < next.length; off += MNIST_PIXELS) {
    const c = clean.subarray(off, off + MNIST_PIXELS);
    out.set(confine(c, next.subarray(off, off + MNIST_PIXELS), passes), off);
  }
  return out;
}
