/**
 * Gradient attacks on the demo models, with TensorFlow.js gradients (white box: the attacker
 * knows the primary model's weights; the guard's detectors are not part of the objective).
 *
 *   - FGSM (Goodfellow et al., ICLR 2015): x' = clip01(x + eps * sign(grad_x L(f(x), y))).
 *   - BIM (Kurakin et al., ICLR 2017 workshop): x_{i+1} = clip_{x,eps}(clip01(x_i + alpha *
 *     sign(grad_x L(f(x_i), y)))), for `steps` iterations.
 *   - PGD (Madry et al., ICLR 2018): BIM from a uniformly random start in the eps-ball; the attack
 *     of PGD adversarial training (scripts/lib/adversarial-training.ts).
 *
 * L is the softmax cross-entropy of the model's LOGITS against the true label: pass a model
 * built with loadTfFromOnnx(bytes, 'linear'). (Through a saturated softmax output the float32
 * gradient is exactly zero and the attack would fail for the wrong reason.)
 */
import * as tf from '@tensorflow/tfjs';

function lossGrad(model: tf.LayersModel): (x: tf.Tensor4D, y: tf.Tensor2D) => tf.Tensor4D {
  return (x, y) =>
    tf.tidy(() => {
      const g = tf.grad((input: tf.Tensor) =>
        tf.losses.softmaxCrossEntropy(y, model.apply(input) as tf.Tensor, undefined, 0, tf.Reduction.SUM),
      );
      return g(x) as tf.Tensor4D;
    });
}

/** Images as flat 784-value rows, labels 0..9; returns adversarial rows (same layout). */
export function fgsm(
  model: tf.LayersModel,
  images: Float32Array,
  labels: ArrayLike<number>,
  eps: number,
): Float32Array {
  const n = labels.length;
  return tf.tidy(() => {
    const x = tf.tensor4d(images, [n, 28, 28, 1]);
    const y = tf.oneHot(tf.tensor1d(Array.from(labels), 'int32'), 10).toFloat() as tf.Tensor2D;
    const g = lossGrad(model)(x, y);
    return (tf.clipByValue(x.add(g.sign().mul(eps)), 0, 1).dataSync() as Float32Array).slice();
  });
}

/** BIM is PGD without the random start. */
export function bim(
  model: tf.LayersModel,
  images: Float32Array,
  labels: ArrayLike<number>,
  eps: number,
  alpha: number,
  steps: number,
): Float32Array {
  return pgd(model, images, labels, { eps, alpha, steps });
}

export interface PgdSettings {
  eps: number;
  /** Step size (Madry et al. use 2.5 * eps / steps). */
  alpha: number;
  steps: number;
  /** Seed of the random start, uniform in the L-infinity ball of radius eps; none: start at x (BIM). */
  seed?: number;
}

/**
 * PGD (Madry et al., ICLR 2018, section 2): from a uniformly random point of the L-infinity ball
 * around x, `steps` signed-gradient ascent steps of the cross-entropy, each projected back onto
 * the ball and onto [0,1]. Tensor in, tensor out (the caller disposes both): the adversarial
 * training loop calls it on every batch. `model` must output logits.
 */
export function pgdTensor(model: tf.LayersModel, x: tf.Tensor4D, y: tf.Tensor2D, s: PgdSettings): tf.Tensor4D {
  const grad = lossGrad(model);
  const lo = tf.clipByValue(x.sub(s.eps), 0, 1);
  const hi = tf.clipByValue(x.add(s.eps), 0, 1);
  let adv: tf.Tensor4D = tf.tidy(() =>
    s.seed === undefined
      ? x.clone()
      : (tf.minimum(
          tf.maximum(x.add(tf.randomUniform(x.shape, -s.eps, s.eps, 'float32', s.seed)), lo),
          hi,
        ) as tf.Tensor4D),
  );
  for (let i = 0; i < s.steps; i++) {
    const next = tf.tidy(() => {
      const g = grad(adv, y);
      return tf.minimum(tf.maximum(adv.add(g.sign().mul(s.alpha)), lo), hi) as tf.Tensor4D;
    });
    adv.dispose();
    adv = next;
  }
  tf.dispose([lo, hi]);
  return adv;
}

/** PGD on flat 784-value rows (labels 0..9); returns adversarial rows (same layout). */
export function pgd(
  model: tf.LayersModel,
  images: Float32Array,
  labels: ArrayLike<number>,
  s: PgdSettings,
): Float32Array {
  const n = labels.length;
  const x = tf.tensor4d(images, [n, 28, 28, 1]);
  const y = tf.oneHot(tf.tensor1d(Array.from(labels), 'int32'), 10).toFloat() as tf.Tensor2D;
  const adv = pgdTensor(model, x, y, s);
  const out = (adv.dataSync() as Float32Array).slice();
  tf.dispose([x, y, adv]);
  return out;
}
