/**
 * Shared set-up of the guard benchmarks: the two demo models in ONNX Runtime (loaded from the
 * committed fixtures), the calibration and evaluation digits of the fixed split, and a profile
 * calibrated on the calibration digits only.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ort } from '../../src/inference/index.ts';
import {
  DEFAULT_SQUEEZERS,
  calibrateProfile,
  computeStatistics,
  floatImageToGuardImage,
  sessionClassifier,
  type Classifier,
  type GuardProfile,
  type GuardImage,
  type SqueezeSettings,
} from '../../src/guard/index.ts';
import { loadMnist, mnistSplit, digitPixels, type MnistData, type MnistSplit } from '../../scripts/lib/mnist-split.ts';

export const ROOT = new URL('../..', import.meta.url).pathname;
export const SHAPE = { channels: 1, height: 28, width: 28 } as const;
export const DIMS = [1, 1, 28, 28];

export interface DemoModels {
  cnn: Classifier;
  mlp: Classifier;
  sessions: ort.InferenceSession[];
}

/** The demo primary; bench/guard-eval.ts --primary picks another (e.g. the PGD-trained CNN). */
export const DEFAULT_PRIMARY = 'fixtures/models/mnist-cnn.onnx';

/** The primary (in the `cnn` slot; `primaryFile` relative to the repository) and the MLP ensemble model. */
export async function loadDemoModels(primaryFile = DEFAULT_PRIMARY): Promise<DemoModels> {
  const opts: ort.InferenceSession.SessionOptions = {
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
  };
  const cnnS = await ort.InferenceSession.create(readFileSync(join(ROOT, primaryFile)), opts);
  const mlpS = await ort.InferenceSession.create(readFileSync(join(ROOT, 'fixtures/models/mnist-mlp.onnx')), opts);
  return {
    cnn: sessionClassifier(cnnS, { dims: DIMS }),
    mlp: sessionClassifier(mlpS, { dims: DIMS }),
    sessions: [cnnS, mlpS],
  };
}

/** A digit as the guard sees a 28x28 PNG: 8-bit pixels and the tensor pixel/255. */
export function asInput(values: Float32Array, format = 'png'): { image: GuardImage; tensor: Float32Array } {
  const image = floatImageToGuardImage(values, 28, 28, format);
  const tensor = new Float32Array(image.pixels.length);
  for (let i = 0; i < tensor.length; i++) tensor[i] = image.pixels[i]! / 255;
  return { image, tensor };
}

export interface Setup {
  data: MnistData;
  split: MnistSplit;
  models: DemoModels;
  profile: GuardProfile;
}

/**
 * `fpr` is the whole pipeline's budget (the default of `edgeguard guard calibrate`); with
 * `squeezeFpr` the profile is calibrated per stage instead (validation at fpr, squeezing at squeezeFpr).
 */
export async function setUp(
  fpr: number,
  squeezeFpr?: number,
  primary: 'cnn' | 'mlp' = 'cnn',
  squeeze: SqueezeSettings = DEFAULT_SQUEEZERS,
  combiner = true,
): Promise<Setup> {
  const data = loadMnist();
  const split = mnistSplit(data.count);
  const models = await loadDemoModels();
  const samples = split.calibration.map((idx) => {
    const { image, tensor } = asInput(digitPixels(data, idx));
    return { stats: computeStatistics(image), tensor };
  });
  const profile = await calibrateProfile({
    samples,
    fpr,
    ...(squeezeFpr === undefined ? {} : { pipeline: false, squeezeFpr }),
    primary: models[primary],
    ensemble: models[primary === 'cnn' ? 'mlp' : 'cnn'],
    shape: SHAPE,
    squeeze,
    combiner,
    model: { name: `mnist-${primary}` },
  });
  return { data, split, models, profile };
}
