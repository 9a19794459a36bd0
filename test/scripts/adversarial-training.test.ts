import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { loadTfFromOnnx } from '../../scripts/lib/demo-models.ts';
import { bim, pgd } from '../../scripts/lib/attacks.ts';
import { trainPgd } from '../../scripts/lib/adversarial-training.ts';
import { loadMnist, mnistSplit, digitPixels, MNIST_PIXELS } from '../../scripts/lib/mnist-split.ts';
import { FIXTURES } from '../helpers/workspace.ts';

function digits(indices: number[]): { rows: Float32Array; labels: number[] } {
  const data = loadMnist();
  const rows = new Float32Array(indices.length * MNIST_PIXELS);
  indices.forEach((idx, i) => rows.set(digitPixels(data, idx), i * MNIST_PIXELS));
  return { rows, labels: indices.map((idx) => data.labels[idx]!) };
}

function logitsModel(file: string): tf.Sequential {
  return loadTfFromOnnx(readFileSync(join(FIXTURES, 'models', file)), 'linear').model;
}

function accuracy(model: tf.Sequential, rows: Float32Array, labels: number[]): number {
  const pred = tf.tidy(
    () =>
      (model.predict(tf.tensor4d(rows, [labels.length, 28, 28, 1])) as tf.Tensor).argMax(1).dataSync() as Int32Array,
  );
  return labels.filter((y, i) => pred[i] === y).length / labels.length;
}

test('PGD stays inside the eps-ball and [0,1]; without a seed it is BIM', async () => {
  await tf.setBackend('cpu');
  const model = logitsModel('mnist-cnn.onnx');
  const { rows, labels } = digits(mnistSplit().evaluation.slice(0, 8));
  const eps = 0.3;
  const adv = pgd(model, rows, labels, { eps, alpha: 0.1, steps: 3, seed: 5 });
  for (let i = 0; i < adv.length; i++) {
    assert.ok(adv[i]! >= 0 && adv[i]! <= 1);
    assert.ok(Math.abs(adv[i]! - rows[i]!) <= eps + 1e-6);
  }
  assert.deepEqual(pgd(model, rows, labels, { eps, alpha: 0.1, steps: 3, seed: 5 }), adv, 'seeded: deterministic');
  const plain = bim(model, rows, labels, eps, 0.1, 3);
  assert.deepEqual(pgd(model, rows, labels, { eps, alpha: 0.1, steps: 3 }), plain);
  assert.notDeepEqual(plain, adv, 'the random start moves the result');
  model.dispose();
});

test('one PGD training step returns the same architecture with a softmax head and changed weights', async () => {
  await tf.setBackend('cpu');
  const start = logitsModel('mnist-cnn.onnx');
  const before = start.getWeights().map((w) => w.dataSync().slice());
  const train = mnistSplit().train.slice(0, 16);
  const batchOf = (idx: number[]) => {
    const { rows, labels } = digits(idx);
    return {
      x: tf.tensor4d(rows, [idx.length, 28, 28, 1]),
      y: tf.oneHot(tf.tensor1d(labels, 'int32'), 10).toFloat() as tf.Tensor2D,
    };
  };
  const settings = {
    eps: 0.3,
    steps: 1,
    epochs: 1,
    batchSize: 16,
    learningRate: 0.001,
    adversarialShare: 0.5,
    rampEpochs: 0,
    shuffleSeed: 1,
    pgdSeed: 2,
  };
  const out = await trainPgd(train, batchOf, settings, start, () => {});
  const layers = out.layers;
  assert.equal(layers.length, 5);
  assert.equal((layers[4]!.getConfig() as { activation?: string }).activation, 'softmax');
  const after = out.getWeights().map((w) => w.dataSync());
  assert.ok(after.some((w, i) => w.some((v, k) => v !== before[i]![k])));
  out.dispose();
});

test('the committed PGD-trained CNN is a demo CNN that PGD fools less often than the demo primary', async () => {
  await tf.setBackend('cpu');
  const robust = logitsModel('mnist-cnn-pgd.onnx');
  const plain = logitsModel('mnist-cnn.onnx');
  const { rows, labels } = digits(mnistSplit().evaluation.slice(0, 100));
  const settings = { eps: 0.3, alpha: 0.075, steps: 10, seed: 9 };
  const robustAcc = accuracy(robust, pgd(robust, rows, labels, settings), labels);
  const plainAcc = accuracy(plain, pgd(plain, rows, labels, settings), labels);
  assert.ok(accuracy(robust, rows, labels) > 0.9, 'clean accuracy');
  assert.ok(robustAcc > plainAcc + 0.1, `PGD accuracy ${robustAcc} against ${plainAcc}`);
  robust.dispose();
  plain.dispose();
});
