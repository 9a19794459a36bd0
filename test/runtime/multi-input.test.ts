/**
 * A model with several inputs of different element types and a symbolic dimension, on real ONNX
 * Runtime: written here with onnx-proto (probabilities = Softmax(x + Cast<float>(ids)); x float32
 * [batch, 3], ids int64 [1, 3]), packed, and fed by name through the runtime and the guard.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import { isEdgeguardError } from '../../src/errors/index.ts';
import { guardConfig } from '../../src/guard/index.ts';
import { packModel, parseModelMetadata } from '../../src/model/index.ts';
import { checkInput, openGuardedModel, type GuardedInput } from '../../src/runtime/index.ts';
import { tempDir, writeKeys } from '../helpers/workspace.ts';

const { onnx } = onnxProto;
const FLOAT = 1;
const INT64 = 7;

function valueInfo(name: string, elemType: number, dims: Array<number | string>): onnxProto.onnx.IValueInfoProto {
  const dim = dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d }));
  return { name, type: { tensorType: { elemType, shape: { dim } } } };
}

function twoInputModel(): Uint8Array {
  const model = onnx.ModelProto.create({
    irVersion: 7,
    opsetImport: [{ domain: '', version: 13 }],
    producerName: 'edgeguard test',
    graph: {
      name: 'two_inputs',
      node: [
        { opType: 'Cast', input: ['ids'], output: ['ids_f'], attribute: [{ name: 'to', type: 2, i: FLOAT }] },
        { opType: 'Add', input: ['x', 'ids_f'], output: ['sum'] },
        { opType: 'Softmax', input: ['sum'], output: ['probabilities'], attribute: [{ name: 'axis', type: 2, i: -1 }] },
      ],
      input: [valueInfo('x', FLOAT, ['batch', 3]), valueInfo('ids', INT64, [1, 3])],
      output: [valueInfo('probabilities', FLOAT, ['batch', 3])],
    },
  });
  return onnx.ModelProto.encode(model).finish();
}

test('two named inputs (float32 with a symbolic dim, int64) reach the model; each is checked', async (t) => {
  const dir = await tempDir(t, 'eg-multi-');
  const keys = await writeKeys(dir);
  await writeFile(join(dir, 'two.onnx'), twoInputModel());
  await packModel({
    inputPath: join(dir, 'two.onnx'),
    outputPath: join(dir, 'two.egm'),
    contentKey: keys.contentKey,
    signer: keys.signer,
    metadata: parseModelMetadata({
      name: 'two',
      version: 1,
      format: 'onnx',
      inputs: [
        { name: 'x', dtype: 'float32', shape: ['batch', 3], range: { min: -10, max: 10 } },
        { name: 'ids', dtype: 'int64', shape: [1, 3], range: { min: 0, max: 100 } },
      ],
      outputs: [{ name: 'probabilities', dtype: 'float32', shape: ['batch', 3], labels: ['a', 'b', 'c'] }],
    }),
  });
  const model = await openGuardedModel({
    models: { primary: join(dir, 'two.egm') },
    publicKeys: [keys.signer.publicKey],
    contentKey: { file: keys.contentKeyPath },
    guard: guardConfig({ ensemble: { enabled: false }, confidence: { threshold: 0.5 } }),
  });
  t.after(() => model.release());
  const feed = (x: number[], ids: number[]): GuardedInput => ({
    kind: 'tensors',
    tensors: [
      { name: 'ids', dims: [1, 3], values: ids },
      { name: 'x', dims: [1, 3], values: x },
    ],
  });
  const { result } = await checkInput(model, feed([0, 0, 1], [0, 9, 0]));
  assert.equal(result.verdict, 'accept');
  assert.equal(result.answer?.label, 'b');
  const expected = [Math.exp(0), Math.exp(9), Math.exp(1)];
  const total = expected.reduce((a, b) => a + b, 0);
  result.answer!.scores.forEach((v, i) => assert.ok(Math.abs(v - expected[i]! / total) < 1e-5));
  // Close to uniform: low confidence flags.
  assert.equal((await checkInput(model, feed([0, 0, 0], [1, 1, 1]))).result.verdict, 'flag');
  const rejects = (input: GuardedInput, pattern: RegExp) =>
    assert.rejects(
      checkInput(model, input),
      (e: unknown) => isEdgeguardError(e, 'EG_INPUT') && pattern.test((e as Error).message),
    );
  await rejects(feed([0, 0, 0], [0, 0.5, 0]), /int64 takes integers/);
  await rejects(feed([0, 0, 0], [0, 101, 0]), /range 0\.\.100/);
  await rejects({ kind: 'tensors', tensors: [{ dims: [1, 3], values: [0, 0, 0] }] }, /takes 2 inputs/);
});
