/**
 * Candidate detectors measured by the adaptive evaluation before any of them is built into the
 * guard (issue 17, item 3): each is fitted on the TRAINING digits only (like the models), scored
 * with TensorFlow.js, and judged like the guard's own stages.
 *
 *   - Mahalanobis (Lee et al., NeurIPS 2018): class means and one shared covariance of the
 *     primary's penultimate-layer features; score = the smallest squared Mahalanobis distance to
 *     a class mean.
 *   - Reconstruction error (MagNet, Meng and Chen, CCS 2017): a small autoencoder trained on
 *     legitimate digits; score = mean squared error between the input and its reconstruction.
 *   - More squeezers (Xu et al., NDSS 2018): 3x3 median, and 2-bit depth, L1 between softmaxes.
 */
import * as tf from '@tensorflow/tfjs';
import {
  NUMERIC_STATISTICS,
  componentPValue,
  fitTailTable,
  l1Distance,
  medianFilter,
  reduceBitDepth,
  thresholdAtFpr,
  type Classifier,
} from '../../src/guard/index.ts';
import { MNIST_PIXELS, mulberry32, shuffleInPlace } from '../../scripts/lib/mnist-split.ts';
import { SHAPE } from './guard-setup.ts';
import type { Detector, ExtraDetector, InputScores } from './adaptive-eval.ts';

function choleskyInverse(a: Float64Array, d: number): Float64Array {
  const l = new Float64Array(d * d);
  for (let i = 0; i < d; i++)
    for (let j = 0; j <= i; j++) {
      let s = a[i * d + j]!;
      for (let k = 0; k < j; k++) s -= l[i * d + k]! * l[j * d + k]!;
      l[i * d + j] = i === j ? Math.sqrt(s) : s / l[j * d + j]!;
    }
  // inverse of L, then A^-1 = L^-T L^-1
  const li = new Float64Array(d * d);
  for (let i = 0; i < d; i++) {
    li[i * d + i] = 1 / l[i * d + i]!;
    for (let j = 0; j < i; j++) {
      let s = 0;
      for (let k = j; k < i; k++) s -= l[i * d + k]! * li[k * d + j]!;
      li[i * d + j] = s / l[i * d + i]!;
    }
  }
  const inv = new Float64Array(d * d);
  for (let i = 0; i < d; i++)
    for (let j = 0; j < d; j++) {
      let s = 0;
      for (let k = Math.max(i, j); k < d; k++) s += li[k * d + i]! * li[k * d + j]!;
      inv[i * d + j] = s;
    }
  return inv;
}

function features(model: tf.LayersModel, rows: Float32Array): Float32Array {
  return tf
    .tidy(
      () =>
        (
          model.predict(tf.tensor4d(rows, [rows.length / MNIST_PIXELS, 28, 28, 1])) as tf.Tensor
        ).dataSync() as Float32Array,
    )
    .slice();
}

/** Mahalanobis detector on the CNN's penultimate layer (the 64-unit dense ReLU). */
export function mahalanobisDetector(cnn: tf.Sequential, train: Float32Array, labels: ArrayLike<number>): ExtraDetector {
  const penultimate = tf.model({
    inputs: cnn.inputs,
    outputs: cnn.layers[cnn.layers.length - 2]!.output as tf.SymbolicTensor,
  });
  const f = features(penultimate, train);
  const n = labels.length;
  const d = f.length / n;
  const means = new Float64Array(10 * d);
  const counts = new Float64Array(10);
  for (let i = 0; i < n; i++) {
    counts[labels[i]!]!++;
    for (let k = 0; k < d; k++) means[labels[i]! * d + k]! += f[i * d + k]!;
  }
  for (let c = 0; c < 10; c++) for (let k = 0; k < d; k++) means[c * d + k]! /= counts[c]!;
  const cov = new Float64Array(d * d);
  for (let i = 0; i < n; i++) {
    const m = labels[i]! * d;
    for (let a = 0; a < d; a++) {
      const da = f[i * d + a]! - means[m + a]!;
      for (let b = 0; b <= a; b++) cov[a * d + b]! += da * (f[i * d + b]! - means[m + b]!);
    }
  }
  let trace = 0;
  for (let a = 0; a < d; a++) for (let b = 0; b <= a; b++) cov[b * d + a] = cov[a * d + b]! /= n;
  for (let a = 0; a < d; a++) trace += cov[a * d + a]!;
  for (let a = 0; a < d; a++) cov[a * d + a]! += (1e-3 * trace) / d; // shrinkage: dead ReLU units have zero variance
  const precision = choleskyInverse(cov, d);
  return {
    name: 'Mahalanobis',
    score: (tensor) => {
      const x = features(penultimate, tensor);
      let best = Infinity;
      const diff = new Float64Array(d);
      for (let c = 0; c < 10; c++) {
        for (let k = 0; k < d; k++) diff[k] = x[k]! - means[c * d + k]!;
        let s = 0;
        for (let a = 0; a < d; a++) {
          let row = 0;
          for (let b = 0; b < d; b++) row += precision[a * d + b]! * diff[b]!;
          s += diff[a]! * row;
        }
        best = Math.min(best, s);
      }
      return best;
    },
  };
}

/** A dense autoencoder 784-256-64-256-784 (sigmoid out), trained on the training digits. */
export async function autoencoderDetector(train: Float32Array, epochs = 8): Promise<ExtraDetector> {
  const ae = tf.sequential();
  ae.add(
    tf.layers.dense({
      inputShape: [MNIST_PIXELS],
      units: 256,
      activation: 'relu',
      kernelInitializer: tf.initializers.glorotUniform({ seed: 31 }),
    }),
  );
  ae.add(
    tf.layers.dense({ units: 64, activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed: 32 }) }),
  );
  ae.add(
    tf.layers.dense({ units: 256, activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed: 33 }) }),
  );
  ae.add(
    tf.layers.dense({
      units: MNIST_PIXELS,
      activation: 'sigmoid',
      kernelInitializer: tf.initializers.glorotUniform({ seed: 34 }),
    }),
  );
  ae.compile({ optimizer: tf.train.adam(0.002), loss: 'meanSquaredError' });
  const n = train.length / MNIST_PIXELS;
  const rand = mulberry32(4242);
  for (let e = 0; e < epochs; e++) {
    const order = shuffleInPlace(
      Array.from({ length: n }, (_, i) => i),
      rand,
    );
    const rows = new Float32Array(train.length);
    order.forEach((src, i) => rows.set(train.subarray(src * MNIST_PIXELS, (src + 1) * MNIST_PIXELS), i * MNIST_PIXELS));
    const x = tf.tensor2d(rows, [n, MNIST_PIXELS]);
    const h = await ae.fit(x, x, { epochs: 1, batchSize: 64, shuffle: false, verbose: 0 });
    x.dispose();
    process.stderr.write(`autoencoder epoch ${e + 1}/${epochs}: loss ${(h.history.loss![0] as number).toFixed(5)}\n`);
  }
  return {
    name: 'reconstruction',
    score: (tensor) =>
      tf.tidy(() => {
        const x = tf.tensor2d(tensor, [1, MNIST_PIXELS]);
        return (ae.predict(x) as tf.Tensor).sub(x).square().mean().dataSync()[0]!;
      }),
  };
}

/** One more squeezer: L1 between the primary's softmax on x and on squeeze(x). */
export function squeezerDetector(
  name: string,
  primary: Classifier,
  squeeze: (x: Float32Array) => Float32Array,
): ExtraDetector {
  return { name, score: async (t) => l1Distance(await primary(t), await primary(squeeze(t))) };
}

export const median3 = (x: Float32Array) => medianFilter(x, SHAPE, 3);
export const bits2 = (x: Float32Array) => reduceBitDepth(x, 2);

type Component = (s: InputScores) => number;

/** Fisher's combination: sum of -log p over components, threshold at `rate` of the calibration inputs. */
export function fisherCombiner(name: string, extras: string[], withValidation: boolean) {
  return {
    name,
    fit: (cal: InputScores[], rate: number): Detector => {
      const pick: Array<[Component, boolean]> = [
        [(s) => -s.confidence, false],
        [(s) => s.ensemble, false],
        [(s) => s.squeeze, false],
        ...extras.map((e): [Component, boolean] => [(s) => s.extra[e]!, false]),
        ...(withValidation ? NUMERIC_STATISTICS.map((st): [Component, boolean] => [(s) => s.stats[st], true]) : []),
      ];
      const ps = pick.map(([f, twoSided]) => {
        const values = cal.map(f);
        const table = {
          upper: fitTailTable(values),
          ...(twoSided ? { lower: fitTailTable(values.map((v) => -v)) } : {}),
        };
        return [f, table] as const;
      });
      const score = (s: InputScores) => ps.reduce((acc, [f, t]) => acc - Math.log(componentPValue(t, f(s))), 0);
      const t = thresholdAtFpr(cal.map(score), rate);
      return (s) => score(s) > t;
    },
  };
}
