/**
 * A model that is not an image classifier behind the guard, on real ONNX Runtime: the demo pump
 * sensor anomaly detector from its package. Guarded by what applies to it: the declared value
 * range (EG_INPUT before the model runs) and confidence; the image-only stages do not run.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isEdgeguardError, type ErrorCode } from '../../src/errors/index.ts';
import { guardConfig } from '../../src/guard/index.ts';
import { encodeNpy, parseNpy } from '../../src/inference/index.ts';
import { checkInput, openGuardedModel, type GuardedInput, type GuardedModel } from '../../src/runtime/index.ts';
import { packDemoModel } from '../helpers/packages.ts';
import { FIXTURES, tempDir, writeKeys } from '../helpers/workspace.ts';

async function openSensorModel(t: Parameters<typeof tempDir>[0]): Promise<GuardedModel> {
  const dir = await tempDir(t, 'eg-sensor-');
  const keys = await writeKeys(dir);
  const model = await openGuardedModel({
    models: { primary: await packDemoModel(dir, keys, 'pump-anomaly') },
    publicKeys: [keys.signer.publicKey],
    contentKey: { file: keys.contentKeyPath },
    // The defaults (validation and squeezing on) stand: they do not apply to a non-image model.
    guard: guardConfig({ ensemble: { enabled: false } }),
  });
  t.after(() => model.release());
  return model;
}

async function reading(name: string): Promise<number[]> {
  const body = JSON.parse(await readFile(join(FIXTURES, 'sensors', `${name}.json`), 'utf8')) as {
    tensor: { data: number[] };
  };
  return body.tensor.data;
}

const features = (values: number[]): GuardedInput => ({ kind: 'tensors', tensors: [{ dims: [1, 12], values }] });
const failsWith = (code: ErrorCode, pattern: RegExp) => (e: unknown) =>
  isEdgeguardError(e, code) && pattern.test((e as Error).message);

test('normal and faulty pump readings get their labels; the image-only stages do not run', async (t) => {
  const model = await openSensorModel(t);
  assert.equal(model.pre, undefined);
  assert.deepEqual(model.executionProviders, ['cpu']);
  for (const name of ['normal-0', 'normal-1', 'anomaly-0', 'anomaly-1']) {
    const { result } = await checkInput(model, features(await reading(name)));
    assert.equal(result.verdict, 'accept', name);
    assert.equal(result.answer?.label, name.split('-')[0]);
    assert.equal(result.stages.validation, undefined);
    assert.equal(result.stages.squeeze, undefined);
    assert.ok(result.stages.confidence?.passed);
  }
});

test('a reading between normal and faulty is flagged for low confidence', async (t) => {
  const model = await openSensorModel(t);
  const [a, b] = [await reading('normal-0'), await reading('anomaly-0')];
  const verdicts = [];
  for (let k = 0; k <= 20; k++) {
    const mix = a.map((v, i) => v + ((b[i]! - v) * k) / 20);
    verdicts.push((await checkInput(model, features(mix))).result);
  }
  const flagged = verdicts.find((r) => r.verdict === 'flag');
  assert.ok(flagged, 'some mixture is flagged');
  assert.deepEqual(
    flagged.reasons.map((r) => r.code),
    ['low-confidence'],
  );
  assert.equal(verdicts[0]!.answer?.label, 'normal');
  assert.equal(verdicts[20]!.answer?.label, 'anomaly');
});

test('the declared range, dims, dtype and input kind are enforced before the model runs', async (t) => {
  const model = await openSensorModel(t);
  const good = await reading('normal-0');
  await assert.rejects(
    checkInput(model, features(good.map((v, i) => (i === 5 ? 6.5 : v)))),
    failsWith('EG_INPUT', /range -6\.\.6/),
  );
  await assert.rejects(checkInput(model, features([...good, 0])), failsWith('EG_INPUT', /13 values/));
  await assert.rejects(
    checkInput(model, { kind: 'tensors', tensors: [{ dims: [12], values: good }] }),
    failsWith('EG_INPUT', /takes \[1,12\]/),
  );
  const png = await readFile(join(FIXTURES, 'digits', '3-0.png'));
  await assert.rejects(
    checkInput(model, { kind: 'image', bytes: png }),
    failsWith('EG_INPUT', /send its inputs as a tensor/),
  );
  const asInt32 = parseNpy(encodeNpy('int32', [1, 12], new Int32Array(12)));
  await assert.rejects(
    checkInput(model, { kind: 'tensors', tensors: [asInt32] }),
    failsWith('EG_INPUT', /sent as int32; the model takes float32/),
  );
});

test('a .npy reading gives the same answer as its JSON form', async (t) => {
  const model = await openSensorModel(t);
  const values = await reading('anomaly-1');
  const npy = parseNpy(encodeNpy('float32', [1, 12], Float32Array.from(values)));
  const fromNpy = await checkInput(model, { kind: 'tensors', tensors: [npy] });
  const fromJson = await checkInput(model, features(values));
  assert.equal(fromNpy.result.answer?.label, 'anomaly');
  assert.deepEqual(fromNpy.result.answer?.scores, fromJson.result.answer?.scores);
});
