/** Shared set-up of the guard tests: the demo models in ONNX Runtime and a calibrated profile. */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import YAML from 'yaml';
import { ort, decodeImage, pixelsToTensor } from '../../src/inference/index.ts';
import { parseModelMetadata, type ImagePreprocessing } from '../../src/model/index.ts';
import {
  calibrateProfile,
  computeStatistics,
  sessionClassifier,
  type Classifier,
  type GuardImage,
  type GuardProfile,
} from '../../src/guard/index.ts';
import { loadMnist, mnistSplit, digitPixels } from '../../scripts/lib/mnist-split.ts';
import { FIXTURES } from '../helpers/workspace.ts';

export const SHAPE = { channels: 1, height: 28, width: 28 };
export const DIMS = [1, 1, 28, 28];

export interface GuardFixture {
  cnn: Classifier;
  mlp: Classifier;
  profile: GuardProfile;
  pre: ImagePreprocessing;
  release(): Promise<void>;
}

export async function preprocessing(): Promise<ImagePreprocessing> {
  const meta = YAML.parse(await readFile(join(FIXTURES, 'models', 'mnist.meta.yaml'), 'utf8'));
  return parseModelMetadata({ ...meta, name: 'mnist', version: 1, format: 'onnx' }).preprocessing!;
}

/** 28x28 values 0..1 as the 8-bit PNG bytes a camera or client would send. */
export async function pngOf(values: ArrayLike<number>): Promise<Buffer> {
  const px = Buffer.alloc(784);
  for (let i = 0; i < 784; i++) px[i] = Math.round(values[i]! * 255);
  return sharp(px, { raw: { width: 28, height: 28, channels: 1 } })
    .png()
    .toBuffer();
}

/** Decode image bytes exactly as the inference service does (in memory, sharp). */
export async function decode(
  bytes: Uint8Array,
  pre: ImagePreprocessing,
): Promise<{ image: GuardImage; tensor: Float32Array }> {
  const image = await decodeImage(bytes, pre);
  return { image, tensor: pixelsToTensor(image, pre).data };
}

/** The in-memory equivalent of decoding a 28x28 PNG of MNIST values. */
export function fromValues(values: ArrayLike<number>): { image: GuardImage; tensor: Float32Array } {
  const pixels = new Uint8Array(784);
  const tensor = new Float32Array(784);
  for (let i = 0; i < 784; i++) {
    pixels[i] = Math.round(values[i]! * 255);
    tensor[i] = pixels[i]! / 255;
  }
  return {
    image: { pixels, width: 28, height: 28, channels: 1, source: { format: 'png', width: 28, height: 28 } },
    tensor,
  };
}

export async function guardFixture(fpr = 0.05): Promise<GuardFixture> {
  const opts: ort.InferenceSession.SessionOptions = { intraOpNumThreads: 1, interOpNumThreads: 1 };
  const cnnS = await ort.InferenceSession.create(await readFile(join(FIXTURES, 'models', 'mnist-cnn.onnx')), opts);
  const mlpS = await ort.InferenceSession.create(await readFile(join(FIXTURES, 'models', 'mnist-mlp.onnx')), opts);
  const cnn = sessionClassifier(cnnS, { dims: DIMS });
  const mlp = sessionClassifier(mlpS, { dims: DIMS });
  const data = loadMnist();
  const samples = mnistSplit(data.count).calibration.map((idx) => {
    const { image, tensor } = fromValues(digitPixels(data, idx));
    return { stats: computeStatistics(image), tensor };
  });
  const profile = await calibrateProfile({
    samples,
    fpr,
    primary: cnn,
    ensemble: mlp,
    shape: SHAPE,
    squeeze: { bitDepth: 1, medianSize: 2 },
  });
  return {
    cnn,
    mlp,
    profile,
    pre: await preprocessing(),
    release: async () => {
      await cnnS.release();
      await mlpS.release();
    },
  };
}
