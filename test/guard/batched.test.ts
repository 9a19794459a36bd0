/**
 * The primary runs the input and its two squeezed copies in one batched ONNX Runtime call when
 * its batch dimension is symbolic; the verdicts, reasons and scores must be those of three
 * separate calls.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isEdgeguardError } from '../../src/errors/index.ts';
import { ort } from '../../src/inference/index.ts';
import {
  Guard,
  guardConfig,
  sessionClassifier,
  type Classifier,
  type GuardConfigInput,
  type GuardResult,
} from '../../src/guard/index.ts';
import { loadMnist, mnistSplit, digitPixels, mulberry32 } from '../../scripts/lib/mnist-split.ts';
import { FIXTURES } from '../helpers/workspace.ts';
import { guardFixture, decode, fromValues, SHAPE, type GuardFixture } from './fixtures.ts';

let f: GuardFixture;
before(async () => {
  f = await guardFixture(0.04);
});
after(async () => {
  await f.release();
});

/** The same classifier without its batched form. */
function unbatched(c: Classifier): Classifier {
  return (input, inputs) => c(input, inputs);
}

function guards(config: GuardConfigInput): [Guard, Guard] {
  const make = (primary: Classifier) =>
    new Guard({ config: guardConfig(config), profile: f.profile, shape: SHAPE, primary, ensemble: f.mlp });
  return [make(f.cnn), make(unbatched(f.cnn))];
}

/** Evaluation digits, some with noise on them, and the committed adversarial example. */
async function sample(): Promise<Array<{ image: ReturnType<typeof fromValues>['image']; tensor: Float32Array }>> {
  const data = loadMnist();
  const rand = mulberry32(17);
  const out = mnistSplit(data.count)
    .evaluation.slice(0, 240)
    .map((idx, i) => {
      const v = Float32Array.from(digitPixels(data, idx));
      if (i % 3 === 0) for (let k = 0; k < v.length; k++) v[k] = Math.min(1, Math.max(0, v[k]! + (rand() - 0.5) * 0.4));
      return fromValues(v);
    });
  out.push(await decode(await readFile(join(FIXTURES, 'guard', 'fgsm-4-as-8.png')), f.pre));
  return out;
}

function scores(r: GuardResult): number[] {
  const s = r.stages;
  return [s.confidence?.value, s.ensemble?.distance, s.squeeze?.bitDepth, s.squeeze?.median, s.combined?.score].map(
    (x) => x ?? -1,
  );
}

test('the primary classifier takes batches when the model batch is symbolic, not when it is fixed', async () => {
  assert.equal(typeof f.cnn.batch, 'function');
  const pump = await ort.InferenceSession.create(await readFile(join(FIXTURES, 'models', 'pump-anomaly.onnx')));
  try {
    assert.equal(sessionClassifier(pump, { dims: [1, 12] }).batch, undefined);
  } finally {
    await pump.release();
  }
  await assert.rejects(f.cnn.batch!(new Float32Array(784 * 2 + 1), 2), (e) => isEdgeguardError(e, 'EG_INPUT'));
});

for (const [name, config] of [
  ['combiner (default)', {}],
  ['per-stage thresholds', { combiner: { enabled: false } }],
  ['3x3 median, configured threshold', { squeeze: { medianSize: 3, threshold: 0.6 } }],
] as const) {
  test(`batched and unbatched pipelines give identical verdicts and reasons: ${name}`, async () => {
    const [batched, single] = guards(config);
    const verdicts = new Map<string, number>();
    for (const x of await sample()) {
      const a = await batched.check(x);
      const b = await single.check(x);
      assert.equal(a.verdict, b.verdict);
      assert.deepEqual(a.reasons, b.reasons);
      assert.deepEqual(a.answer, b.answer);
      const sa = scores(a);
      const sb = scores(b);
      sa.forEach((v, i) => assert.ok(Math.abs(v - sb[i]!) < 1e-5, `score ${i}: ${v} vs ${sb[i]}`));
      verdicts.set(a.verdict, (verdicts.get(a.verdict) ?? 0) + 1);
    }
    // The sample exercises more than one verdict.
    assert.ok(verdicts.size >= 2, JSON.stringify([...verdicts]));
  });
}
