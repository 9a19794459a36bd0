/**
 * Trains the second demo model, one that is not an image classifier: a logistic-style anomaly
 * detector over 12 pump sensor readings, and writes the committed fixtures:
 *
 *   fixtures/models/pump-anomaly.onnx        (ONNX, opset 13; input `input` float32 [1,12],
 *                                              output `probabilities` float32 [1,2]: normal, anomaly)
 *   fixtures/models/pump-anomaly.meta.yaml   is hand-written next to it (declared range -6..6)
 *   fixtures/sensors/<label>-<n>.json        (evaluation readings as `run --tensor` JSON)
 *
 * Run: npx tsx scripts/train-sensor-model.ts   (seconds; not run by CI). --verify retrains and
 * compares with the committed .onnx byte for byte, writing nothing.
 *
 * The readings are synthetic and deterministic (a seeded generator): each feature is a
 * standardised sensor value (z-score). A healthy pump's readings follow one latent load with
 * per-sensor gains plus noise; a faulty one adds one of three patterns seen on real machinery:
 * a bearing spike on the vibration channels, a seal leak that breaks the pressure/flow relation,
 * or a thermal drift. Values are clipped to -6..6, the range the metadata declares.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { ort } from '../src/inference/index.ts';
import { mulberry32, shuffleInPlace } from './lib/mnist-split.ts';
import { exportOnnx, ONNX_INPUT, ONNX_OUTPUT } from './lib/demo-models.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const MODEL_FILE = join(ROOT, 'fixtures', 'models', 'pump-anomaly.onnx');
const SAMPLES_DIR = join(ROOT, 'fixtures', 'sensors');

export const SENSOR_FEATURES = 12;
const GAINS = [0.9, 0.8, 0.7, 0.6, 0.9, 0.8, 0.5, 0.5, 0.4, 0.7, 0.6, 0.8];
const VIBRATION = [6, 7, 8];
const PRESSURE = 2;
const FLOW = 3;
const TEMPERATURE = [0, 1];

/** Standard normal from two uniforms (Box-Muller), so the data depends on the seed only. */
function gaussian(rand: () => number): number {
  const u = Math.max(rand(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
}

function reading(rand: () => number, anomaly: boolean): number[] {
  const load = gaussian(rand);
  const x = GAINS.map((g) => g * load + 0.35 * gaussian(rand));
  if (anomaly) {
    const kind = Math.floor(rand() * 3);
    if (kind === 0) for (const i of VIBRATION) x[i]! += 2.5 + rand() * 2;
    else if (kind === 1) {
      x[PRESSURE] = -x[PRESSURE]! - 1.5;
      x[FLOW]! += 2;
    } else for (const i of TEMPERATURE) x[i]! += 3 + rand() * 1.5;
  }
  return x.map((v) => Math.min(6, Math.max(-6, v)));
}

function dataset(count: number, seed: number): { x: number[][]; y: number[] } {
  const rand = mulberry32(seed);
  const x: number[][] = [];
  const y: number[] = [];
  for (let i = 0; i < count; i++) {
    const anomaly = rand() < 0.3;
    x.push(reading(rand, anomaly));
    y.push(anomaly ? 1 : 0);
  }
  return { x, y };
}

function build(): tf.Sequential {
  const m = tf.sequential({ name: 'pump_anomaly' });
  m.add(
    tf.layers.dense({
      inputShape: [SENSOR_FEATURES],
      units: 16,
      activation: 'relu',
      kernelInitializer: tf.initializers.glorotUniform({ seed: 31 }),
    }),
  );
  m.add(
    tf.layers.dense({
      units: 2,
      activation: 'softmax',
      kernelInitializer: tf.initializers.glorotUniform({ seed: 32 }),
    }),
  );
  return m;
}

async function train(): Promise<tf.Sequential> {
  const { x, y } = dataset(4000, 7);
  const model = build();
  model.compile({ optimizer: tf.train.adam(0.01), loss: 'categoricalCrossentropy', metrics: ['accuracy'] });
  const rand = mulberry32(8);
  for (let epoch = 0; epoch < 20; epoch++) {
    const order = shuffleInPlace(
      x.map((_, i) => i),
      rand,
    );
    const xs = tf.tensor2d(order.map((i) => x[i]!));
    const ys = tf.oneHot(
      tf.tensor1d(
        order.map((i) => y[i]!),
        'int32',
      ),
      2,
    );
    await model.fit(xs, ys, { epochs: 1, batchSize: 64, shuffle: false, verbose: 0 });
    tf.dispose([xs, ys]);
  }
  return model;
}

/** Accuracy in ONNX Runtime on fresh readings, and agreement with TF.js (same argmax, within 1e-4). */
async function evaluate(
  bytes: Uint8Array,
  model: tf.Sequential,
): Promise<{ accuracy: number; x: number[][]; y: number[] }> {
  const { x, y } = dataset(500, 99);
  const session = await ort.InferenceSession.create(bytes);
  let correct = 0;
  for (let i = 0; i < x.length; i++) {
    const out = await session.run({
      [ONNX_INPUT]: new ort.Tensor('float32', Float32Array.from(x[i]!), [1, SENSOR_FEATURES]),
    });
    const p = out[ONNX_OUTPUT]!.data as Float32Array;
    const t = tf.tidy(() => (model.predict(tf.tensor2d([x[i]!])) as tf.Tensor).dataSync());
    if (Math.abs(p[0]! - t[0]!) > 1e-4) throw new Error(`ONNX and TF.js disagree on reading ${i}`);
    if ((p[1]! > p[0]! ? 1 : 0) === y[i]) correct++;
  }
  await session.release();
  return { accuracy: correct / x.length, x, y };
}

async function main(): Promise<void> {
  const args = parseArgs({ options: { verify: { type: 'boolean', default: false } } }).values;
  await tf.setBackend('cpu');
  const model = await train();
  const bytes = exportOnnx(model, 'sensor-mlp', 'edgeguard demo: pump sensor anomaly detector (12 z-scores)', {
    input: [1, SENSOR_FEATURES],
    output: [1, 2],
  });
  const { accuracy, x, y } = await evaluate(bytes, model);
  console.log(`pump-anomaly: accuracy ${accuracy.toFixed(3)} on 500 fresh readings`);
  if (accuracy < 0.9) throw new Error('the sensor model is not accurate enough to demo');
  if (args.verify) {
    const same = Buffer.from(bytes).equals(readFileSync(MODEL_FILE));
    console.log(same ? 'identical to the committed model' : 'DIFFERS from the committed model');
    if (!same) process.exitCode = 1;
    return;
  }
  writeFileSync(MODEL_FILE, bytes);
  mkdirSync(SAMPLES_DIR, { recursive: true });
  for (const label of [0, 1]) {
    const picks = y.flatMap((v, i) => (v === label ? [i] : [])).slice(0, 3);
    picks.forEach((i, n) => {
      const body = { tensor: { dims: [1, SENSOR_FEATURES], data: x[i]!.map((v) => Number(v.toFixed(4))) } };
      writeFileSync(join(SAMPLES_DIR, `${label ? 'anomaly' : 'normal'}-${n}.json`), JSON.stringify(body) + '\n');
    });
  }
}

await main();
