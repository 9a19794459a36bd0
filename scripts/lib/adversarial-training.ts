/**
 * PGD adversarial training of the demo CNN (Madry et al., "Towards Deep Learning Models Resistant
 * to Adversarial Attacks", ICLR 2018): each batch's examples are replaced, in the share
 * `adversarialShare`, by PGD examples made against the model being trained at that moment (random
 * start in the L-infinity ball, `steps` signed-gradient steps of size alpha, projected onto the
 * ball and onto [0,1]); the rest stay clean (the mixed objective of Goodfellow et al., ICLR 2015).
 * The radius ramps up linearly over the first `rampEpochs` epochs, a common aid for small models
 * that otherwise stall at eps 0.3. Training runs on logits (softmax cross-entropy), so the PGD
 * gradients do not vanish through a saturated softmax; the returned model has the softmax head
 * the ONNX export needs, with the same weights.
 */
import * as tf from '@tensorflow/tfjs';
import { pgdTensor } from './attacks.ts';
import { buildCnn } from './demo-models.ts';
import { mulberry32, shuffleInPlace } from './mnist-split.ts';

export interface PgdTrainingSettings {
  eps: number;
  steps: number;
  /** PGD step size; Madry et al.'s 2.5 * eps / steps when absent. */
  alpha?: number;
  epochs: number;
  batchSize: number;
  learningRate: number;
  /** Share of each batch replaced by PGD examples (1 = Madry et al.'s objective). */
  adversarialShare: number;
  rampEpochs: number;
  shuffleSeed: number;
  pgdSeed: number;
}

/** Images [n,28,28,1] and one-hot labels [n,10] of the given digit indices. */
export type BatchOf = (indices: number[]) => { x: tf.Tensor4D; y: tf.Tensor2D };

/**
 * Train (or, given `start`, continue training) a linear-head CNN adversarially; returns the same
 * weights under a softmax head.
 */
export async function trainPgd(
  trainIdx: number[],
  batchOf: BatchOf,
  s: PgdTrainingSettings,
  start?: tf.Sequential,
  log: (line: string) => void = console.log,
): Promise<tf.Sequential> {
  const model = start ?? buildCnn(undefined, 'linear');
  const optimizer = tf.train.adam(s.learningRate);
  const rand = mulberry32(s.shuffleSeed);
  const batchesPerEpoch = Math.ceil(trainIdx.length / s.batchSize);
  const rampBatches = Math.max(1, s.rampEpochs * batchesPerEpoch);
  const variables = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const t0 = Date.now();
  let step = 0;
  for (let epoch = 0; epoch < s.epochs; epoch++) {
    const order = shuffleInPlace([...trainIdx], rand);
    let lossSum = 0;
    let correct = 0;
    for (let b = 0; b < batchesPerEpoch; b++, step++) {
      const { x, y } = batchOf(order.slice(b * s.batchSize, (b + 1) * s.batchSize));
      const n = x.shape[0];
      const k = Math.round(n * s.adversarialShare);
      const eps = s.eps * Math.min(1, (step + 1) / rampBatches);
      const settings = { eps, alpha: s.alpha ?? (2.5 * eps) / s.steps, steps: s.steps, seed: s.pgdSeed + step };
      const xs = tf.tidy(() => {
        if (k === 0) return x.clone();
        const head = x.slice([0, 0, 0, 0], [k, 28, 28, 1]);
        const adv = pgdTensor(model, head, y.slice([0, 0], [k, 10]), settings);
        return k === n ? adv : tf.concat([adv, x.slice([k, 0, 0, 0], [n - k, 28, 28, 1])]);
      });
      const cost = optimizer.minimize(
        () => {
          const logits = model.apply(xs, { training: true }) as tf.Tensor2D;
          correct += tf.tidy(() => logits.argMax(1).equal(y.argMax(1)).sum().dataSync()[0]!);
          return tf.losses.softmaxCrossEntropy(y, logits) as tf.Scalar;
        },
        true,
        variables,
      );
      lossSum += cost!.dataSync()[0]! * n;
      tf.dispose([x, y, xs, cost!]);
      if ((b + 1) % 20 === 0 || b + 1 === batchesPerEpoch) {
        const seen = Math.min((b + 1) * s.batchSize, trainIdx.length);
        log(
          `  pgd epoch ${epoch + 1}/${s.epochs} batch ${b + 1}/${batchesPerEpoch} eps ${eps.toFixed(3)}: loss ${(lossSum / seen).toFixed(4)} train acc (mixed batch) ${((correct / seen) * 100).toFixed(2)}% (${((Date.now() - t0) / 1000).toFixed(0)} s)`,
        );
      }
    }
  }
  optimizer.dispose();
  const out = buildCnn(undefined, 'softmax');
  out.setWeights(model.getWeights());
  model.dispose();
  return out;
}
