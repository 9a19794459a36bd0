/**
 * The inference service with a model that is not an image classifier (the demo pump sensor
 * model, real ONNX Runtime): tensors as JSON and .npy, the declared range and dims enforced (422),
 * the strict schema (400), confidence flags, and the execution providers in /healthz.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isEdgeguardError } from '../../src/errors/index.ts';
import { EXECUTION_PROVIDERS, availableExecutionProviders, encodeNpy } from '../../src/inference/index.ts';
import { FIXTURES } from '../helpers/workspace.ts';
import { infer, serveFixture, startService, strictTensorCases } from './serve-fixture.ts';

const SENSOR_CONFIG = {
  models: { primary: 'pump-anomaly.egm' },
  // Validation and squeezing are image stages: left at their defaults, they do not apply here.
  guard: { ensemble: { enabled: false } },
};

async function reading(name: string): Promise<string> {
  return readFile(join(FIXTURES, 'sensors', `${name}.json`), 'utf8');
}

test('sensor readings as JSON and .npy get answers; /healthz reports the execution providers', async (t) => {
  const f = await serveFixture(t);
  const s = await startService(t, f.config(SENSOR_CONFIG));
  const normal = await infer(s.url, await reading('normal-0'), 'application/json');
  assert.equal(normal.status, 200, JSON.stringify(normal.body));
  assert.equal(normal.body.verdict, 'accept');
  assert.equal(normal.body.label, 'normal');
  const values = (JSON.parse(await reading('anomaly-2')) as { tensor: { data: number[] } }).tensor.data;
  const npy = await infer(s.url, encodeNpy('float32', [1, 12], Float32Array.from(values)), 'application/x-npy');
  assert.equal(npy.status, 200, JSON.stringify(npy.body));
  assert.equal(npy.body.label, 'anomaly');
  const named = await infer(
    s.url,
    JSON.stringify({ inputs: { input: { dims: [1, 12], data: values } } }),
    'application/json',
  );
  assert.deepEqual(named.body.scores, npy.body.scores);
  const health = (await (await fetch(`${s.url}/healthz`)).json()) as { runtime: { executionProviders: string[] } };
  assert.deepEqual(health.runtime.executionProviders, ['cpu']);
});

test('out-of-range values, wrong dims, images and loose JSON are refused with typed codes', async (t) => {
  const f = await serveFixture(t);
  const s = await startService(t, f.config(SENSOR_CONFIG));
  const twelve = (v: number) => JSON.stringify({ tensor: { dims: [1, 12], data: new Array(12).fill(v) } });
  const png = await readFile(join(FIXTURES, 'digits', '1-0.png'));
  const cases: Array<[string, Uint8Array | string, string, number, string]> = [
    // Inside 0..1 is no longer the rule: the declared range -6..6 is.
    ['negative z-scores in range', twelve(-2), 'application/json', 200, ''],
    ['beyond the declared range', twelve(7), 'application/json', 422, 'EG_INPUT'],
    [
      'wrong dims',
      JSON.stringify({ tensor: { dims: [12], data: new Array(12).fill(0) } }),
      'application/json',
      422,
      'EG_INPUT',
    ],
    [
      'an unknown input name',
      JSON.stringify({ inputs: { x: { dims: [1, 12], data: new Array(12).fill(0) } } }),
      'application/json',
      422,
      'EG_INPUT',
    ],
    ['npy of another dtype', encodeNpy('float64', [1, 12], new Float64Array(12)), 'application/x-npy', 422, 'EG_INPUT'],
    ['an image', png, 'image/png', 422, 'EG_INPUT'],
    ...strictTensorCases([1, 12]),
  ];
  for (const [name, body, type, status, code] of cases) {
    const r = await infer(s.url, body, type);
    assert.equal(r.status, status, `${name}: ${JSON.stringify(r.body)}`);
    if (code) assert.equal(r.body.error?.code, code, name);
  }
});

test('execution providers: an unknown name or one this build lacks stops the start with EG_CONFIG', async (t) => {
  const f = await serveFixture(t);
  const missing = EXECUTION_PROVIDERS.filter((p) => !availableExecutionProviders().includes(p));
  for (const providers of [['quantum'], ...missing.map((p) => [p])]) {
    await assert.rejects(
      startService(t, f.config({ ...SENSOR_CONFIG, runtime: { executionProviders: providers } })),
      (e: unknown) => isEdgeguardError(e, 'EG_CONFIG') && (e as Error).message.includes(providers[0]!),
    );
  }
});
