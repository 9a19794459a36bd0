/**
 * Writes the guard's committed fixtures:
 *
 *   fixtures/guard/fgsm-<true>-as-<adv>.png   one FGSM example (eps 0.3) against the CNN, made
 *                                              from an evaluation digit with TensorFlow.js
 *                                              gradients; the tests check it is flagged by squeezing
 *   fixtures/guard/mnist-cnn.profile.json      a per-stage (version 1) profile calibrated on the
 *                                              1,000 calibration digits at 5% FPR (for the demo,
 *                                              the README and the agent tests)
 *   fixtures/guard/mnist-cnn.pipeline.profile.json   a version-3 profile: the whole pipeline
 *                                              calibrated to a 4% budget, with the calibrated
 *                                              combiner, 1-bit + 3x3 median squeezers (what
 *                                              `guard calibrate --fpr 0.04` writes; the demo's guard
 *                                              and agent steps, examples/agent.yaml)
 *
 * Run: npx tsx scripts/make-guard-fixtures.ts   (seconds; not run by CI). Deterministic: the
 * first evaluation digit (split order) for which the 8-bit PNG of the attack still fools the
 * CNN in ONNX Runtime and has the largest possible squeezing distance margin is taken.
 */
import { mkdirSync, readFileSync, readdirSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';
import { loadTfFromOnnx } from './lib/demo-models.ts';
import { fgsm } from './lib/attacks.ts';
import { loadMnist, mnistSplit, digitPixels, MNIST_PIXELS } from './lib/mnist-split.ts';
import { RECOMMENDED_SQUEEZERS, argmax, serializeProfile, squeezeScore } from '../src/guard/index.ts';
import { asInput, setUp, SHAPE } from '../bench/lib/guard-setup.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const OUT = join(ROOT, 'fixtures', 'guard');

async function main(): Promise<void> {
  await tf.setBackend('cpu');
  mkdirSync(OUT, { recursive: true });
  const data = loadMnist();
  const split = mnistSplit(data.count);
  const s = await setUp(0.05, 0.05); // per-stage (version 1): the agent tests rely on the seed's rules
  writeFileSync(join(OUT, 'mnist-cnn.profile.json'), serializeProfile(s.profile));
  console.log(
    `profile: squeeze threshold ${s.profile.squeeze?.threshold.toFixed(4)}, validation measured FPR ${s.profile.validation.measuredFpr}`,
  );
  // Version 3, as `guard calibrate --fpr 0.04` makes it: the combiner decides, 1-bit + 3x3 median.
  const budget = await setUp(0.04, undefined, 'cnn', RECOMMENDED_SQUEEZERS, true);
  writeFileSync(join(OUT, 'mnist-cnn.pipeline.profile.json'), serializeProfile(budget.profile));
  console.log(
    `pipeline profile: cross-validated FPR ${budget.profile.pipeline?.crossValidatedFpr}, upper bound ${budget.profile.pipeline?.upperBound}`,
  );
  for (const x of budget.models.sessions) await x.release();

  const { model } = loadTfFromOnnx(readFileSync(join(ROOT, 'fixtures/models/mnist-cnn.onnx')), 'linear');
  const candidates = split.evaluation.slice(0, 100);
  const images = new Float32Array(candidates.length * MNIST_PIXELS);
  candidates.forEach((idx, i) => images.set(digitPixels(data, idx), i * MNIST_PIXELS));
  const labels = candidates.map((idx) => data.labels[idx]!);
  const adv = fgsm(model, images, labels, 0.3);
  const threshold = s.profile.squeeze!.threshold;
  for (let i = 0; i < candidates.length; i++) {
    const clean = asInput(digitPixels(data, candidates[i]!));
    if (argmax(await s.models.cnn(clean.tensor)) !== labels[i]) continue;
    const { image, tensor } = asInput(adv.subarray(i * MNIST_PIXELS, (i + 1) * MNIST_PIXELS)); // as the 8-bit PNG will be
    const p = await s.models.cnn(tensor);
    const advLabel = argmax(p);
    if (advLabel === labels[i]) continue;
    const sq = await squeezeScore(s.models.cnn, tensor, p, SHAPE, { bitDepth: 1, medianSize: 2 });
    if (sq.score < Math.min(1.9, threshold + 0.3)) continue;
    for (const f of readdirSync(OUT)) if (f.startsWith('fgsm-')) unlinkSync(join(OUT, f));
    const file = `fgsm-${labels[i]}-as-${advLabel}.png`;
    await sharp(Buffer.from(image.pixels), { raw: { width: 28, height: 28, channels: 1 } })
      .png()
      .toFile(join(OUT, file));
    console.log(
      `${file}: mnist index ${candidates[i]}, CNN confidence ${p[advLabel]!.toFixed(3)} for ${advLabel}, squeeze score ${sq.score.toFixed(3)} (threshold ${threshold.toFixed(3)})`,
    );
    return;
  }
  throw new Error('no FGSM example with a clear squeezing margin among the first 100 evaluation digits');
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
