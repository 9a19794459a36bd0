/**
 * The runtime against real protected packages and real ONNX Runtime: a guarded model opened from
 * its spec answers legitimate digits, the tensor path agrees with the image path, and bad inputs
 * (declared type against magic, tensor dims, values, arbitrary bytes) give typed errors only.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import YAML from 'yaml';
import { EdgeguardError, isEdgeguardError } from '../../src/errors/index.ts';
import { guardConfig } from '../../src/guard/index.ts';
import { decodeImage, pixelsToTensor } from '../../src/inference/index.ts';
import { packModel, parseModelMetadata } from '../../src/model/index.ts';
import { checkInput, openGuardedModel, type GuardedInput, type GuardedModel } from '../../src/runtime/index.ts';
import { FIXTURES, tempDir, writeKeys } from '../helpers/workspace.ts';

async function openDemoModel(t: Parameters<typeof tempDir>[0]): Promise<GuardedModel> {
  const dir = await tempDir(t, 'eg-runtime-');
  const keys = await writeKeys(dir);
  const meta = YAML.parse(await readFile(join(FIXTURES, 'models', 'mnist.meta.yaml'), 'utf8')) as object;
  for (const name of ['mnist-cnn', 'mnist-mlp']) {
    await packModel({
      inputPath: join(FIXTURES, 'models', `${name}.onnx`),
      outputPath: join(dir, `${name}.egm`),
      contentKey: keys.contentKey,
      signer: keys.signer,
      metadata: parseModelMetadata({ ...meta, name, version: 1, format: 'onnx' }),
    });
  }
  const model = await openGuardedModel({
    models: { primary: join(dir, 'mnist-cnn.egm'), ensemble: join(dir, 'mnist-mlp.egm') },
    publicKeys: [keys.signer.publicKey],
    contentKey: { file: keys.contentKeyPath },
    guard: guardConfig(),
    profile: join(FIXTURES, 'guard', 'mnist-cnn.profile.json'),
  });
  t.after(() => model.release());
  return model;
}

const tensors = (dims: number[], values: number[]): GuardedInput => ({ kind: 'tensors', tensors: [{ dims, values }] });

const inputError = (code: string) => (e: unknown) => isEdgeguardError(e, code as EdgeguardError['code']);

test('a guarded model from its spec: a digit is accepted, and its tensor gets the same verdict', async (t) => {
  const model = await openDemoModel(t);
  assert.equal(model.key.provider, 'key-file');
  assert.deepEqual(model.shape, { channels: 1, height: 28, width: 28 });
  const bytes = await readFile(join(FIXTURES, 'digits', '3-0.png'));
  const fromImage = await checkInput(model, { kind: 'image', bytes, format: 'image/png' });
  assert.equal(fromImage.result.verdict, 'accept');
  assert.equal(fromImage.result.answer?.label, '3');
  const pre = model.pre!;
  const tensor = pixelsToTensor(await decodeImage(bytes, pre), pre).data;
  const fromTensor = await checkInput(model, tensors([1, 1, 28, 28], Array.from(tensor)));
  assert.equal(fromTensor.result.answer?.label, '3');
  assert.equal(bytes.subarray(0, 4).toString('latin1'), '\x89PNG', 'the caller owns the input bytes');
});

test('bad inputs: declared type against magic, tensor dims, count and values give EG_INPUT', async (t) => {
  const model = await openDemoModel(t);
  const png = await readFile(join(FIXTURES, 'digits', '7-0.png'));
  await assert.rejects(checkInput(model, { kind: 'image', bytes: png, format: 'image/jpeg' }), inputError('EG_INPUT'));
  await assert.rejects(
    checkInput(model, { kind: 'image', bytes: Buffer.alloc(2), format: 'image/png' }),
    inputError('EG_INPUT'),
  );
  const zeros = new Array<number>(784).fill(0);
  await assert.rejects(checkInput(model, tensors([1, 28, 28], zeros)), inputError('EG_INPUT'));
  await assert.rejects(checkInput(model, tensors([1, 1, 28, 28], zeros.slice(1))), inputError('EG_INPUT'));
  for (const bad of [Number.NaN, -0.1, 1.5, Number.POSITIVE_INFINITY]) {
    const data = [...zeros];
    data[400] = bad;
    await assert.rejects(checkInput(model, tensors([1, 1, 28, 28], data)), inputError('EG_INPUT'));
  }
});

test('property: arbitrary bytes as an image give a verdict or a typed error, never an untyped one', async (t) => {
  const model = await openDemoModel(t);
  const png = await readFile(join(FIXTURES, 'digits', '3-0.png'));
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(
        fc.uint8Array({ maxLength: 512 }),
        fc.tuple(fc.nat(png.length - 1), fc.integer({ min: 1, max: 255 })).map(([i, x]) => {
          const b = Uint8Array.from(png);
          b[i] = b[i]! ^ x;
          return b;
        }),
      ),
      async (bytes) => {
        try {
          const { result } = await checkInput(model, { kind: 'image', bytes: Buffer.from(bytes) });
          assert.ok(['accept', 'flag', 'reject'].includes(result.verdict));
        } catch (e) {
          assert.ok(e instanceof EdgeguardError, String(e));
        }
      },
    ),
    { numRuns: 60 },
  );
});
