/**
 * Trains the two demo MNIST classifiers and writes the committed fixtures:
 *
 *   fixtures/models/mnist-mlp.onnx, fixtures/models/mnist-cnn.onnx   (ONNX, opset 13)
 *   fixtures/models/training-report.json                             (accuracy, agreement)
 *   fixtures/digits/<label>-<n>.png                                  (20 evaluation digits)
 *
 * Run: npx tsx scripts/train-demo-models.ts   (about 12 minutes on 2 cores; not run by CI).
 *      --verify       retrain and compare with the committed .onnx files byte for byte, write nothing
 *      --only mlp|cnn one architecture
 *      --adversarial pgd [--eps 0.3] [--steps 5] [--epochs 3] [--train-count 7000] [--adversarial-share 0.5]
 *                     [--ramp-epochs 1] [--from fixtures/models/mnist-cnn.onnx]
 *                     instead: PGD adversarial training of the CNN (scripts/lib/adversarial-training.ts),
 *                     written to fixtures/models/mnist-cnn-pgd.onnx and mnist-cnn-pgd.report.json;
 *                     --from continues from an exported model's weights instead of seeded ones
 * Reproducible: fixed initializer seeds, a seeded shuffle per epoch, the deterministic split of
 * scripts/lib/mnist-split.ts, and TensorFlow.js's deterministic pure-JS cpu backend.
 * Every exported file is loaded back into ONNX Runtime and must give the same argmax as
 * TensorFlow.js on every evaluation digit (probabilities within 1e-4), or the script fails.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { ort } from '../src/inference/index.ts';
import sharp from 'sharp';
import {
  loadMnist,
  mnistSplit,
  mulberry32,
  shuffleInPlace,
  digitPixels,
  MNIST_PIXELS,
  type MnistData,
} from './lib/mnist-split.ts';
import {
  buildMlp,
  buildCnn,
  exportOnnx,
  loadTfFromOnnx,
  ONNX_INPUT,
  ONNX_OUTPUT,
  type DemoArch,
} from './lib/demo-models.ts';
import { trainPgd, type PgdTrainingSettings } from './lib/adversarial-training.ts';
import { pgd } from './lib/attacks.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const MODELS_DIR = join(ROOT, 'fixtures', 'models');
const DIGITS_DIR = join(ROOT, 'fixtures', 'digits');

const TRAINING = {
  mlp: { epochs: 12, batchSize: 64, learningRate: 0.001, shuffleSeed: 101 },
  cnn: { epochs: 10, batchSize: 64, learningRate: 0.002, shuffleSeed: 202 },
} as const;

function batchTensors(data: MnistData, indices: number[]): { x: tf.Tensor4D; y: tf.Tensor2D } {
  const xs = new Float32Array(indices.length * MNIST_PIXELS);
  const ys = new Float32Array(indices.length * 10);
  indices.forEach((idx, i) => {
    xs.set(digitPixels(data, idx), i * MNIST_PIXELS);
    ys[i * 10 + (data.labels[idx] as number)] = 1;
  });
  return { x: tf.tensor4d(xs, [indices.length, 28, 28, 1]), y: tf.tensor2d(ys, [indices.length, 10]) };
}

async function train(arch: DemoArch, data: MnistData, trainIdx: number[]): Promise<tf.Sequential> {
  const cfg = TRAINING[arch];
  const model = arch === 'mlp' ? buildMlp() : buildCnn();
  model.compile({ optimizer: tf.train.adam(cfg.learningRate), loss: 'categoricalCrossentropy', metrics: ['accuracy'] });
  const rand = mulberry32(cfg.shuffleSeed);
  const t0 = Date.now();
  for (let epoch = 0; epoch < cfg.epochs; epoch++) {
    const order = shuffleInPlace([...trainIdx], rand);
    const { x, y } = batchTensors(data, order);
    const h = await model.fit(x, y, { epochs: 1, batchSize: cfg.batchSize, shuffle: false, verbose: 0 });
    x.dispose();
    y.dispose();
    const loss = (h.history.loss?.[0] as number | undefined) ?? NaN;
    const acc = (h.history.acc?.[0] as number | undefined) ?? NaN;
    console.log(
      `  ${arch} epoch ${epoch + 1}/${cfg.epochs}: loss ${loss.toFixed(4)} train acc ${(acc * 100).toFixed(2)}% (${((Date.now() - t0) / 1000).toFixed(1)} s)`,
    );
  }
  return model;
}

function tfProbabilities(model: tf.Sequential, data: MnistData, indices: number[]): Float32Array {
  const { x, y } = batchTensors(data, indices);
  const p = model.predict(x) as tf.Tensor;
  const out = p.dataSync() as Float32Array;
  x.dispose();
  y.dispose();
  p.dispose();
  return out.slice();
}

function argmax(p: Float32Array | number[], offset = 0, n = 10): number {
  let best = 0;
  for (let i = 1; i < n; i++) if ((p[offset + i] as number) > (p[offset + best] as number)) best = i;
  return best;
}

interface CheckResult {
  tfAccuracy: number;
  onnxAccuracy: number;
  argmaxMismatches: number;
  maxAbsProbabilityDiff: number;
}

async function checkOnnx(
  bytes: Uint8Array,
  tfProbs: Float32Array,
  data: MnistData,
  indices: number[],
): Promise<CheckResult> {
  const session = await ort.InferenceSession.create(bytes);
  let tfCorrect = 0,
    onnxCorrect = 0,
    mismatches = 0,
    maxDiff = 0;
  for (let i = 0; i < indices.length; i++) {
    const idx = indices[i] as number;
    const input = new ort.Tensor('float32', Float32Array.from(digitPixels(data, idx)), [1, 1, 28, 28]);
    const out = await session.run({ [ONNX_INPUT]: input });
    const probs = out[ONNX_OUTPUT]?.data as Float32Array;
    const label = data.labels[idx] as number;
    const tfArg = argmax(tfProbs, i * 10);
    const onnxArg = argmax(probs);
    if (tfArg === label) tfCorrect++;
    if (onnxArg === label) onnxCorrect++;
    if (tfArg !== onnxArg) mismatches++;
    for (let k = 0; k < 10; k++)
      maxDiff = Math.max(maxDiff, Math.abs((probs[k] as number) - (tfProbs[i * 10 + k] as number)));
  }
  await session.release();
  return {
    tfAccuracy: tfCorrect / indices.length,
    onnxAccuracy: onnxCorrect / indices.length,
    argmaxMismatches: mismatches,
    maxAbsProbabilityDiff: maxDiff,
  };
}

async function writeDigits(data: MnistData, evaluation: number[]): Promise<string[]> {
  mkdirSync(DIGITS_DIR, { recursive: true });
  const perLabel = new Map<number, number>();
  const written: string[] = [];
  for (const idx of evaluation) {
    const label = data.labels[idx] as number;
    const n = perLabel.get(label) ?? 0;
    if (n >= 2) continue;
    perLabel.set(label, n + 1);
    const px = digitPixels(data, idx);
    const bytes = Buffer.alloc(MNIST_PIXELS);
    for (let i = 0; i < MNIST_PIXELS; i++) bytes[i] = Math.round((px[i] as number) * 255);
    const file = join(DIGITS_DIR, `${label}-${n}.png`);
    await sharp(bytes, { raw: { width: 28, height: 28, channels: 1 } })
      .png()
      .toFile(file);
    written.push(`${label}-${n}.png (mnist index ${idx})`);
    if (written.length === 20) break;
  }
  return written;
}

const { values: args } = parseArgs({
  options: {
    verify: { type: 'boolean', default: false },
    only: { type: 'string' },
    adversarial: { type: 'string' },
    eps: { type: 'string', default: '0.3' },
    steps: { type: 'string', default: '5' },
    epochs: { type: 'string', default: '3' },
    'train-count': { type: 'string', default: '7000' },
    'adversarial-share': { type: 'string', default: '0.5' },
    'ramp-epochs': { type: 'string', default: '1' },
    from: { type: 'string' },
  },
});

/** Accuracy under PGD (eps, 10 steps, random start) of a logit model on the given digits. */
function robustAccuracy(model: tf.Sequential, data: MnistData, indices: number[], eps: number): number {
  let correct = 0;
  for (let i = 0; i < indices.length; i += 100) {
    const chunk = indices.slice(i, i + 100);
    const rows = new Float32Array(chunk.length * MNIST_PIXELS);
    chunk.forEach((idx, k) => rows.set(digitPixels(data, idx), k * MNIST_PIXELS));
    const labels = chunk.map((idx) => data.labels[idx]!);
    const adv = pgd(model, rows, labels, { eps, alpha: eps / 4, steps: 10, seed: 7 + i });
    const logits = tf.tidy(
      () => (model.predict(tf.tensor4d(adv, [chunk.length, 28, 28, 1])) as tf.Tensor).dataSync() as Float32Array,
    );
    labels.forEach((label, k) => {
      if (argmax(logits, k * 10) === label) correct++;
    });
  }
  return correct / indices.length;
}

/** --adversarial pgd: train the PGD CNN, export it beside the demo models, check it, report. */
async function adversarialMain(data: MnistData, split: ReturnType<typeof mnistSplit>): Promise<void> {
  if (args.adversarial !== 'pgd') throw new Error(`--adversarial ${args.adversarial}: only pgd is implemented`);
  const settings: PgdTrainingSettings = {
    eps: Number(args.eps),
    steps: Number(args.steps),
    epochs: Number(args.epochs),
    batchSize: 64,
    learningRate: 0.001,
    adversarialShare: Number(args['adversarial-share']),
    rampEpochs: Number(args['ramp-epochs']),
    shuffleSeed: 303,
    pgdSeed: 404,
  };
  const train = split.train.slice(0, Number(args['train-count']));
  const start = args.from ? loadTfFromOnnx(readFileSync(join(ROOT, args.from)), 'linear').model : undefined;
  // Continuing an earlier PGD run: keep its report, so the file says how the weights came about.
  const previousReport = args.from ? join(ROOT, args.from.replace(/\.onnx$/, '.report.json')) : undefined;
  const previous =
    previousReport && existsSync(previousReport) ? (JSON.parse(readFileSync(previousReport, 'utf8')) as unknown) : null;
  console.log(
    `pgd training on ${train.length} digits${args.from ? ` from ${args.from}` : ''}: ${JSON.stringify(settings)}`,
  );
  const t0 = Date.now();
  const model = await trainPgd(train, (idx) => batchTensors(data, idx), settings, start);
  const seconds = (Date.now() - t0) / 1000;
  const bytes = exportOnnx(
    model,
    'cnn',
    `edgeguard demo MNIST CNN, PGD adversarially trained (eps ${settings.eps}, ${settings.steps} steps): input [N,1,28,28] pixel/255 white-on-black, output probabilities [N,10] for labels 0..9`,
  );
  const probs = tfProbabilities(model, data, split.evaluation);
  const check = await checkOnnx(bytes, probs, data, split.evaluation);
  if (check.argmaxMismatches !== 0 || check.maxAbsProbabilityDiff > 1e-4) {
    throw new Error('ONNX export of the PGD CNN disagrees with TensorFlow.js');
  }
  const logits = loadTfFromOnnx(bytes, 'linear').model;
  const robust = robustAccuracy(logits, data, split.evaluation.slice(0, 500), settings.eps);
  writeFileSync(join(MODELS_DIR, 'mnist-cnn-pgd.onnx'), bytes);
  const report = {
    file: 'fixtures/models/mnist-cnn-pgd.onnx',
    bytes: bytes.length,
    parameters: model.countParams(),
    trainDigits: train.length,
    from: args.from ?? null,
    trainSeconds: Math.round(seconds),
    ...settings,
    ...check,
    pgdAccuracy: { eps: settings.eps, steps: 10, digits: 500, accuracy: robust },
    previous,
  };
  writeFileSync(join(MODELS_DIR, 'mnist-cnn-pgd.report.json'), JSON.stringify(report, null, 2) + '\n');
  console.log(
    `cnn-pgd: trained in ${seconds.toFixed(0)} s; evaluation accuracy ${(check.onnxAccuracy * 100).toFixed(2)}%; PGD eps ${settings.eps} accuracy on 500 evaluation digits ${(robust * 100).toFixed(1)}%`,
  );
}

async function main(): Promise<void> {
  await tf.setBackend('cpu');
  const archs: DemoArch[] = args.only === 'mlp' || args.only === 'cnn' ? [args.only] : ['mlp', 'cnn'];
  const data = loadMnist();
  const split = mnistSplit(data.count);
  console.log(
    `mnist: ${data.count} digits; train ${split.train.length}, calibration ${split.calibration.length}, evaluation ${split.evaluation.length}`,
  );
  mkdirSync(MODELS_DIR, { recursive: true });
  if (args.adversarial) return adversarialMain(data, split);
  const report: Record<string, unknown> = {
    split: { train: split.train.length, calibration: split.calibration.length, evaluation: split.evaluation.length },
  };
  const evalProbs: Partial<Record<DemoArch, Float32Array>> = {};
  for (const arch of archs) {
    const t0 = Date.now();
    const model = await train(arch, data, split.train);
    const seconds = (Date.now() - t0) / 1000;
    const bytes = exportOnnx(
      model,
      arch,
      `edgeguard demo MNIST ${arch.toUpperCase()}: input [N,1,28,28] pixel/255 white-on-black, output probabilities [N,10] for labels 0..9`,
    );
    const file = join(MODELS_DIR, `mnist-${arch}.onnx`);
    if (args.verify) {
      const same = Buffer.from(bytes).equals(readFileSync(file));
      console.log(`${arch}: retrained model is ${same ? 'byte-identical to' : 'DIFFERENT from'} ${file}`);
      if (!same) process.exitCode = 1;
      model.dispose();
      continue;
    }
    writeFileSync(file, bytes);
    const probs = tfProbabilities(model, data, split.evaluation);
    evalProbs[arch] = probs;
    const check = await checkOnnx(bytes, probs, data, split.evaluation);
    console.log(
      `${arch}: ${bytes.length} bytes, ${model.countParams()} parameters, trained in ${seconds.toFixed(1)} s; evaluation accuracy tfjs ${(check.tfAccuracy * 100).toFixed(2)}%, onnxruntime ${(check.onnxAccuracy * 100).toFixed(2)}%; argmax mismatches ${check.argmaxMismatches}, max |dp| ${check.maxAbsProbabilityDiff.toExponential(2)}`,
    );
    if (check.argmaxMismatches !== 0 || check.maxAbsProbabilityDiff > 1e-4) {
      throw new Error(`ONNX export of ${arch} disagrees with TensorFlow.js`);
    }
    report[arch] = {
      file: `fixtures/models/mnist-${arch}.onnx`,
      bytes: bytes.length,
      parameters: model.countParams(),
      trainSeconds: Math.round(seconds),
      ...TRAINING[arch],
      ...check,
    };
    model.dispose();
  }
  if (args.verify || archs.length < 2) return;
  let agree = 0;
  for (let i = 0; i < split.evaluation.length; i++)
    if (argmax(evalProbs.mlp as Float32Array, i * 10) === argmax(evalProbs.cnn as Float32Array, i * 10)) agree++;
  report.ensembleAgreement = agree / split.evaluation.length;
  report.digits = await writeDigits(data, split.evaluation);
  writeFileSync(join(MODELS_DIR, 'training-report.json'), JSON.stringify(report, null, 2) + '\n');
  console.log(
    `ensemble agreement on evaluation: ${((agree / split.evaluation.length) * 100).toFixed(2)}%; wrote fixtures/models and fixtures/digits`,
  );
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
