import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isEdgeguardError } from '../../src/errors/index.ts';
import { Guard, argmax, floatImageToGuardImage, guardConfig, type GuardConfigInput } from '../../src/guard/index.ts';
import { loadMnist, mnistSplit, digitPixels, mulberry32 } from '../../scripts/lib/mnist-split.ts';
import { FIXTURES } from '../helpers/workspace.ts';
import { guardFixture, decode, fromValues, pngOf, SHAPE, type GuardFixture } from './fixtures.ts';

let f: GuardFixture;
before(async () => {
  f = await guardFixture(0.05);
});
after(async () => {
  await f.release();
});

/** The guard with per-stage thresholds (the combiner has its own tests, combiner.test.ts). */
function guard(config: GuardConfigInput = {}): Guard {
  return new Guard({
    config: guardConfig({ combiner: { enabled: false }, ...config }),
    profile: f.profile,
    shape: SHAPE,
    primary: f.cnn,
    ensemble: f.mlp,
    labels: ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'],
  });
}

test('a legitimate digit PNG is accepted and answered by the primary model', async () => {
  const g = guard();
  const { image, tensor } = await decode(await readFile(join(FIXTURES, 'digits', '7-0.png')), f.pre);
  const r = await g.check({ tensor, image });
  assert.equal(r.verdict, 'accept', JSON.stringify(r.reasons));
  assert.deepEqual(r.reasons, []);
  assert.equal(r.answer?.source, 'primary');
  assert.equal(r.answer?.label, '7');
  assert.ok(
    r.stages.validation?.passed && r.stages.confidence?.passed && r.stages.ensemble?.agrees && r.stages.squeeze?.passed,
  );
  assert.ok(r.answer!.confidence >= 0.85);
  // Most of the shipped sample digits pass, and every accepted one is answered correctly.
  let accepted = 0;
  for (let label = 0; label < 10; label++) {
    for (const n of [0, 1]) {
      const d = await decode(await readFile(join(FIXTURES, 'digits', `${label}-${n}.png`)), f.pre);
      const x = await g.check(d);
      if (x.verdict === 'accept') {
        accepted++;
        assert.equal(x.answer?.label, String(label), `${label}-${n}.png`);
      }
    }
  }
  assert.ok(accepted >= 16, `only ${accepted} of 20 sample digits accepted`);
  // A tensor sent as JSON (no codec, no source size) is checked on its pixel statistics only.
  const values = digitPixels(loadMnist(), mnistSplit().evaluation[2]!);
  const asTensor = await g.check({
    tensor: Float32Array.from(values),
    image: floatImageToGuardImage(values, 28, 28, 'tensor'),
  });
  assert.equal(asTensor.stages.validation?.passed, true, JSON.stringify(asTensor.reasons));
  const noiseTensor = Float32Array.from({ length: 784 }, (_, i) => ((i * 7919) % 256) / 255);
  assert.equal(
    (await g.check({ tensor: noiseTensor, image: floatImageToGuardImage(noiseTensor, 28, 28, 'tensor') })).verdict,
    'reject',
  );
});

test('noise, blank and inverted images are rejected by input validation, before any model runs', async () => {
  const g = guard();
  const rand = mulberry32(42);
  const data = loadMnist();
  const digit = digitPixels(data, mnistSplit().evaluation[0]!);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
  const cases: Record<string, number[]> = {
    'uniform noise': Array.from({ length: 784 }, () => rand()),
    'gaussian noise': Array.from({ length: 784 }, () => Math.min(1, Math.max(0, 0.5 + 0.25 * gauss()))),
    blank: new Array<number>(784).fill(0),
    white: new Array<number>(784).fill(1),
    inverted: Array.from(digit, (v) => 1 - v),
  };
  for (const [name, values] of Object.entries(cases)) {
    const r = await g.check(await decode(await pngOf(values), f.pre));
    assert.equal(r.verdict, 'reject', name);
    assert.ok(
      r.reasons.length > 0 && r.reasons.every((x) => x.stage === 'validation' && x.code === 'out-of-profile'),
      name,
    );
    assert.equal(r.answer, undefined, `${name}: a rejected input gets no answer`);
    assert.equal(r.primary, undefined, `${name}: short-circuit, no model ran`);
  }
  // The reasons name the statistic: a blank image has no contrast.
  const blank = await g.check(await decode(await pngOf(cases.blank!), f.pre));
  assert.ok(
    blank.reasons.some((x) => x.message.startsWith('contrast 0 ')),
    JSON.stringify(blank.reasons),
  );
  // A digit of the wrong size is out of profile too.
  const big = await g.check(
    await decode(
      await (
        await import('sharp')
      )
        .default(await pngOf(digit))
        .resize(56, 56)
        .png()
        .toBuffer(),
      f.pre,
    ),
  );
  assert.ok(big.reasons.some((x) => x.message.startsWith('dimensions 56x56')));
});

/** The first evaluation digit (split order) that passes validation and satisfies `pick`. */
async function findDigit(g: Guard, pick: (r: Awaited<ReturnType<Guard['check']>>) => boolean) {
  const data = loadMnist();
  for (const idx of mnistSplit().evaluation) {
    const input = fromValues(digitPixels(data, idx));
    const r = await g.check(input);
    if (r.stages.validation?.passed && pick(r)) return { idx, input, r };
  }
  throw new Error('no such digit in the evaluation split');
}

test('a low-confidence digit is flagged and answered by the fallback model', async () => {
  const g = guard();
  // The profile's calibrated threshold is in force (the configuration sets none).
  assert.equal(g.confidenceThreshold, f.profile.pipeline!.confidenceThreshold);
  const { input, r } = await findDigit(g, (x) => x.stages.confidence!.value < g.confidenceThreshold);
  assert.equal(r.stages.confidence!.threshold, g.confidenceThreshold);
  assert.equal(r.verdict, 'flag');
  assert.ok(r.reasons.some((x) => x.code === 'low-confidence' && x.stage === 'confidence'));
  assert.equal(r.answer?.source, 'fallback');
  const fallback = await f.mlp(input.tensor);
  assert.equal(r.answer?.index, argmax(fallback));
  assert.ok(Math.abs(r.answer!.confidence - fallback[argmax(fallback)]!) < 1e-6);
  assert.ok(r.primary!.confidence < g.confidenceThreshold);
});

test('threshold precedence: the configuration, else the profile, else 0.85 and argmax disagreement', () => {
  const pl = f.profile.pipeline!;
  assert.ok(pl.confidenceThreshold < 0.85 && pl.ensembleThreshold !== undefined);
  const fromProfile = guard();
  assert.equal(fromProfile.confidenceThreshold, pl.confidenceThreshold);
  assert.equal(fromProfile.ensembleThreshold, pl.ensembleThreshold);
  assert.equal(fromProfile.squeezeThreshold, f.profile.squeeze!.threshold);
  const explicit = guard({ confidence: { threshold: 0.85 }, ensemble: { threshold: 1 }, squeeze: { threshold: 0.5 } });
  assert.deepEqual(
    [explicit.confidenceThreshold, explicit.ensembleThreshold, explicit.squeezeThreshold],
    [0.85, 1, 0.5],
  );
  const { pipeline: _dropped, combiner: _none, ...stageProfile } = f.profile;
  const seed = new Guard({
    config: guardConfig(),
    profile: { ...stageProfile, version: 1 },
    shape: SHAPE,
    primary: f.cnn,
    ensemble: f.mlp,
  });
  assert.equal(seed.confidenceThreshold, 0.85);
  assert.equal(seed.ensembleThreshold, undefined, 'argmax disagreement');
});

test('an ensemble disagreement is flagged, and the fallback answers', async () => {
  // Calibrated: the L1 distance between the two models' probabilities above the profile's threshold.
  const g = guard();
  const { input, r } = await findDigit(g, (x) => x.stages.ensemble!.passed === false);
  assert.equal(r.verdict, 'flag');
  assert.ok(r.reasons.some((x) => x.code === 'ensemble-disagreement' && x.message.includes('(L1)')));
  assert.ok(r.stages.ensemble!.distance > r.stages.ensemble!.threshold!);
  assert.equal(r.answer?.source, 'fallback');
  assert.equal(r.answer?.index, argmax(await f.mlp(input.tensor)));
  // Without a calibrated threshold (a version-1 profile), the two argmaxes differing flags.
  const { pipeline: _dropped, combiner: _none, ...stageProfile } = f.profile;
  const seed = new Guard({
    config: guardConfig(),
    profile: { ...stageProfile, version: 1 },
    shape: SHAPE,
    primary: f.cnn,
    ensemble: f.mlp,
  });
  const d = await findDigit(seed, (x) => x.stages.ensemble!.agrees === false);
  assert.equal(d.r.verdict, 'flag');
  assert.equal(d.r.stages.ensemble!.passed, false);
  assert.equal(d.r.stages.ensemble!.threshold, undefined);
  assert.notEqual(argmax(await f.cnn(d.input.tensor)), argmax(await f.mlp(d.input.tensor)));
  assert.equal(d.r.answer?.source, 'fallback');
  assert.equal(d.r.answer?.index, d.r.stages.ensemble!.index);
});

test('the profile calibrated to a 5% pipeline budget keeps the default pipeline within it on held-out digits', async () => {
  const pl = f.profile.pipeline!;
  assert.equal(pl.fpr, 0.05);
  assert.ok(pl.upperBound <= 0.05, `upper bound ${pl.upperBound}`);
  assert.equal(f.profile.validation.fpr, pl.stageRate);
  assert.equal(f.profile.squeeze!.fpr, pl.stageRate);
  // The 2,000 evaluation digits were seen by neither training nor calibration. (Measured: 3.7%
  // flagged or rejected; the seed's rules, 0.85 and argmax disagreement, flag about 10%.)
  const g = guard();
  const data = loadMnist();
  let notAccepted = 0;
  const evaluation = mnistSplit().evaluation;
  for (const idx of evaluation)
    if ((await g.check(fromValues(digitPixels(data, idx)))).verdict !== 'accept') notAccepted++;
  assert.ok(notAccepted / evaluation.length <= 0.05, `${notAccepted} of ${evaluation.length}`);
});

test('the stored FGSM example fools the primary model and is flagged by feature squeezing', async () => {
  const bytes = await readFile(join(FIXTURES, 'guard', 'fgsm-4-as-8.png'));
  const input = await decode(bytes, f.pre);
  // It is a real adversarial example: the primary model is confidently wrong.
  const p = await f.cnn(input.tensor);
  assert.equal(argmax(p), 8);
  assert.ok(p[8]! > 0.85);
  // Squeezing alone (other stages off) flags it.
  const squeezeOnly = guard({
    validation: { enabled: false },
    confidence: { enabled: false },
    ensemble: { enabled: false },
  });
  const r = await squeezeOnly.check(input);
  assert.equal(r.verdict, 'flag');
  assert.deepEqual(
    r.reasons.map((x) => x.code),
    ['squeeze-distance'],
  );
  assert.ok(r.stages.squeeze!.score > f.profile.squeeze!.threshold);
  // The full pipeline stops it earlier: its perturbation is visible to the noise statistic.
  const full = await guard().check(input);
  assert.equal(full.verdict, 'reject');
  assert.ok(full.reasons.some((x) => x.message.startsWith('noise ')));
  // A legitimate digit stays under the squeezing threshold.
  const clean = await squeezeOnly.check(await decode(await readFile(join(FIXTURES, 'digits', '4-0.png')), f.pre));
  assert.equal(clean.verdict, 'accept');
});

test('the guard fails closed on incomplete configuration and malformed input', async () => {
  const make = (config: GuardConfigInput, o: { profile?: boolean; ensemble?: boolean } = {}) =>
    new Guard({
      config: guardConfig(config),
      ...(o.profile === false ? {} : { profile: f.profile }),
      shape: SHAPE,
      primary: f.cnn,
      ...(o.ensemble === false ? {} : { ensemble: f.mlp }),
    });
  const configError = (e: unknown) => isEdgeguardError(e, 'EG_CONFIG');
  assert.throws(() => make({}, { profile: false }), configError);
  assert.throws(() => make({}, { ensemble: false }), configError);
  assert.throws(
    () => make({ validation: { enabled: false } }, { profile: false }),
    configError,
    'squeezing without a threshold',
  );
  assert.throws(() => make({ squeeze: { bitDepth: 3 } }), configError, 'profile calibrated for other squeezers');
  // Unset squeezers follow the profile: one calibrated with a 3x3 median squeezes with it.
  const wide = { ...f.profile, squeeze: { ...f.profile.squeeze!, medianSize: 3 } };
  const follows = new Guard({ config: guardConfig(), profile: wide, shape: SHAPE, primary: f.cnn, ensemble: f.mlp });
  assert.deepEqual(follows.squeezers, { bitDepth: 1, medianSize: 3 });
  assert.throws(
    () =>
      new Guard({
        config: guardConfig({ squeeze: { medianSize: 2 } }),
        profile: wide,
        shape: SHAPE,
        primary: f.cnn,
        ensemble: f.mlp,
      }),
    configError,
  );
  const minimal = make(
    { validation: { enabled: false }, ensemble: { enabled: false }, squeeze: { threshold: 0.5 } },
    { profile: false, ensemble: false },
  );
  const r = await minimal.check({ tensor: fromValues(digitPixels(loadMnist(), mnistSplit().evaluation[0]!)).tensor });
  assert.ok(['accept', 'flag'].includes(r.verdict));
  assert.equal(r.answer?.source, 'primary', 'no fallback configured: the primary answers');
  await assert.rejects(make({}).check({ tensor: new Float32Array(10) }), (e: unknown) =>
    isEdgeguardError(e, 'EG_INPUT'),
  );
  await assert.rejects(
    make({}).check({ tensor: new Float32Array(784) }),
    (e: unknown) => isEdgeguardError(e, 'EG_INPUT'),
    'validation needs the image',
  );
});
