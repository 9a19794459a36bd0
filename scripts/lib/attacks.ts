/**
 * Gradient attacks on the demo models, with TensorFlow.js gradients (white box: the attacker
 * knows the primary model's weights; the guard's detectors are not part of the objective).
 *
 *   - FGSM (Goodfellow et al., ICLR 2015): x' = clip01(x + eps * sign(grad_x L(f(x), y))).
 *   - BIM (Kurakin et al., ICLR 2017 workshop): x_{i+1} = clip_{x,eps}(clip01(x_i + alpha *
 *     sign(grad_x L(f(x_i), y)))), for `steps` iterations.
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

export function bim(
  model: tf.LayersModel,
  images: Float32Array,
  labels: ArrayLike<number>,
  eps: number,
  alpha: number,
  steps: number,
): Float32Array {
  const n = labels.length;
  const grad = lossGrad(model);
  const x0 = tf.tensor4d(images, [n, 28, 28, 1]);
  const y = tf.oneHot(tf.tensor1d(Array.from(labels), 'int32'), 10).toFloat() as tf.Tensor2D;
  const lo = tf.clipByValue(x0.sub(eps), 0, 1);
  const hi = tf.clipByValue(x0.add(eps), 0, 1);
  let x: tf.Tensor4D = x0.clone();
  for (let i = 0; i < steps; i++) {
    const next = tf.tidy(() => {
      const g = grad(x, y);
      return tf.minimum(tf.maximum(x.add(g.sign().mul(alpha)), lo), hi) as tf.Tensor4D;
    });
    x.dispose();
    x = next;
  }
  const out = (x.dataSync() as Float32Array).slice();
  tf.dispose([x, x0, y, lo, hi]);
  return out;
}
