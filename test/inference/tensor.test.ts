/**
 * Tensors from callers: the strict JSON forms, and the check against the declared inputs (names,
 * dtypes, dims with symbolic dimensions, value bounds and declared ranges), and what packing reads
 * from a model (describeOnnx).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { checkModelInputs, describeOnnx, parseTensorJson, type SuppliedTensor } from '../../src/inference/index.ts';
import { EdgeguardError, type ErrorCode } from '../../src/errors/index.ts';
import { parseModelMetadata } from '../../src/model/index.ts';
import { FIXTURES } from '../helpers/workspace.ts';

const rejects = (fn: () => unknown, code: ErrorCode, pattern: RegExp) =>
  assert.throws(fn, (e: unknown) => e instanceof EdgeguardError && e.code === code && pattern.test(e.message));

const meta = parseModelMetadata({
  name: 'm',
  version: 1,
  format: 'onnx',
  inputs: [
    { name: 'features', dtype: 'float32', shape: ['batch', 4], range: { min: -1, max: 1 } },
    { name: 'ids', dtype: 'int64', shape: [-1] },
  ],
});

test('JSON: the single-tensor and named forms', () => {
  assert.deepEqual(parseTensorJson({ tensor: { dims: [2], data: [1, 2] } }), [{ dims: [2], values: [1, 2] }]);
  assert.deepEqual(parseTensorJson({ inputs: { a: { dims: [1], data: [0.5] }, b: { dims: [], data: [3] } } }), [
    { name: 'a', dims: [1], values: [0.5] },
    { name: 'b', dims: [], values: [3] },
  ]);
});

test('JSON: numbers only, integer dims, no unknown keys, no nesting', () => {
  const bad = [
    { tensor: { dims: [1], data: ['0.5'] } },
    { tensor: { dims: [1], data: [null] } },
    { tensor: { dims: [1, 1], data: [[0]] } },
    { tensor: { dims: ['1'], data: [0] } },
    { tensor: { dims: [1.5], data: [0] } },
    { tensor: { dims: [-1], data: [0] } },
    { tensor: { dims: [1], data: [0], dtype: 'float32' } },
    { tensor: { dims: [1], data: [0] }, extra: true },
    { inputs: {} },
    { inputs: { a: { dims: [1] } } },
    { tensor: { dims: [1], data: [true] } },
    [],
    null,
    'tensor',
  ];
  for (const body of bad) rejects(() => parseTensorJson(body), 'EG_FORMAT', /is invalid at/);
});

test('inputs are checked by name, dims (symbolic dims take any size), dtype bounds and declared range', () => {
  const ok = checkModelInputs(meta.inputs, [
    { name: 'ids', dims: [3], values: [1, 2, 3] },
    { name: 'features', dims: [2, 4], values: [0, 0.5, -1, 1, 0, 0, 0, 0] },
  ]);
  assert.deepEqual(
    ok.map((i) => [i.name, i.dtype, i.dims, i.data.constructor.name]),
    [
      ['features', 'float32', [2, 4], 'Float32Array'],
      ['ids', 'int64', [3], 'BigInt64Array'],
    ],
  );
  const features = (values: number[], dims = [1, 4]): SuppliedTensor => ({ name: 'features', dims, values });
  const ids: SuppliedTensor = { name: 'ids', dims: [1], values: [7] };
  rejects(() => checkModelInputs(meta.inputs, [features([0, 0, 0, 0])]), 'EG_INPUT', /"ids" is missing/);
  rejects(() => checkModelInputs(meta.inputs, [{ dims: [1], values: [0] }]), 'EG_INPUT', /takes 2 inputs/);
  rejects(
    () => checkModelInputs(meta.inputs, [features([0, 0, 0, 0]), ids, { name: 'x', dims: [], values: [0] }]),
    'EG_INPUT',
    /no input "x"/,
  );
  rejects(() => checkModelInputs(meta.inputs, [features([0, 0, 0], [1, 3]), ids]), 'EG_INPUT', /takes \[batch,4\]/);
  rejects(() => checkModelInputs(meta.inputs, [features([0, 0, 0], [1, 4]), ids]), 'EG_INPUT', /has 3 values/);
  rejects(() => checkModelInputs(meta.inputs, [features([0, 0, 1.5, 0]), ids]), 'EG_INPUT', /range -1\.\.1/);
  rejects(
    () => checkModelInputs(meta.inputs, [features([0, 0, 0, 0]), { ...ids, values: [0.5] }]),
    'EG_INPUT',
    /int64 takes integers/,
  );
  rejects(
    () =>
      checkModelInputs(meta.inputs, [
        features([0, 0, 0, 0]),
        { ...ids, values: new Float32Array([1]), dtype: 'float32' },
      ]),
    'EG_INPUT',
    /sent as float32; the model takes int64/,
  );
});

test('a default range applies to inputs that declare none; the declared one wins', () => {
  const image = parseModelMetadata({ name: 'i', version: 1, format: 'onnx', inputs: [{ name: 'x', shape: [1, 2] }] });
  const unit = { min: 0, max: 1 };
  rejects(() => checkModelInputs(image.inputs, [{ dims: [1, 2], values: [0, 2] }], unit), 'EG_INPUT', /range 0\.\.1/);
  assert.equal(checkModelInputs(meta.inputs.slice(0, 1), [{ dims: [1, 4], values: [-1, 0, 0, 0] }], unit).length, 1);
});

test('old metadata (no range, image preprocessing) still parses; a bad range is refused', () => {
  const m = parseModelMetadata({
    name: 'mnist',
    version: 3,
    format: 'onnx',
    inputs: [{ name: 'input', dtype: 'float32', shape: [1, 1, 28, 28] }],
    preprocessing: { type: 'image', colorSpace: 'grayscale', width: 28, height: 28 },
  });
  assert.equal(m.inputs[0]!.range, undefined);
  rejects(
    () => parseModelMetadata({ ...m, inputs: [{ name: 'x', range: { min: 2, max: 1 } }] }),
    'EG_FORMAT',
    /range\.min must not exceed/,
  );
});

test('describeOnnx reads each input and output element type and dims from the model (ONNX Runtime)', async () => {
  const bytes = await readFile(join(FIXTURES, 'models', 'pump-anomaly.onnx'));
  const described = await describeOnnx(bytes);
  assert.deepEqual(described.inputs, [{ name: 'input', dtype: 'float32', shape: [1, 12] }]);
  assert.deepEqual(described.outputs, [{ name: 'probabilities', dtype: 'float32', shape: [1, 2] }]);
});
