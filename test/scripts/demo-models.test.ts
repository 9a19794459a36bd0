import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { ort } from '../../src/inference/index.ts';
import { exportOnnx, loadTfFromOnnx } from '../../scripts/lib/demo-models.ts';
import { loadMnist, mnistSplit, digitPixels, SPLIT_SIZES } from '../../scripts/lib/mnist-split.ts';
import { FIXTURES } from '../helpers/workspace.ts';

test('the split is deterministic, disjoint and of the documented sizes', () => {
  const a = mnistSplit();
  const b = mnistSplit();
  assert.deepEqual(a, b);
  assert.equal(a.train.length, SPLIT_SIZES.train);
  assert.equal(a.calibration.length, SPLIT_SIZES.calibration);
  assert.equal(a.evaluation.length, SPLIT_SIZES.evaluation);
  const all = new Set([...a.train, ...a.calibration, ...a.evaluation]);
  assert.equal(all.size, a.train.length + a.calibration.length + a.evaluation.length);
  const data = loadMnist();
  assert.equal(data.count, 10000);
  assert.ok([...all].every((i) => i >= 0 && i < data.count));
});

test('the committed ONNX models re-import into TensorFlow.js, re-export byte for byte, and agree with ONNX Runtime', async () => {
  await tf.setBackend('cpu');
  const data = loadMnist();
  const digits = mnistSplit().evaluation.slice(0, 50);
  for (const arch of ['mlp', 'cnn'] as const) {
    const bytes = readFileSync(join(FIXTURES, 'models', `mnist-${arch}.onnx`));
    const { model, arch: found } = loadTfFromOnnx(bytes);
    assert.equal(found, arch);
    // Export is the exact inverse of import (layout transposes included).
    const again = exportOnnx(
      model,
      arch,
      `edgeguard demo MNIST ${arch.toUpperCase()}: input [N,1,28,28] pixel/255 white-on-black, output probabilities [N,10] for labels 0..9`,
    );
    assert.ok(Buffer.from(again).equals(bytes), `${arch}: re-export differs`);
    const session = await ort.InferenceSession.create(bytes);
    try {
      const x = new Float32Array(digits.length * 784);
      digits.forEach((idx, i) => x.set(digitPixels(data, idx), i * 784));
      const tfProbs = tf.tidy(
        () => (model.predict(tf.tensor4d(x, [digits.length, 28, 28, 1])) as tf.Tensor).dataSync() as Float32Array,
      );
      for (let i = 0; i < digits.length; i++) {
        const out = await session.run({
          input: new ort.Tensor('float32', x.slice(i * 784, (i + 1) * 784), [1, 1, 28, 28]),
        });
        const p = out.probabilities!.data as Float32Array;
        for (let k = 0; k < 10; k++)
          assert.ok(Math.abs(p[k]! - tfProbs[i * 10 + k]!) < 1e-4, `${arch} digit ${i} class ${k}`);
      }
    } finally {
      await session.release();
      model.dispose();
    }
  }
});
