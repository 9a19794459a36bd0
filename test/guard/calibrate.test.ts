import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { isEdgeguardError } from '../../src/errors/index.ts';
import {
  allowedCount,
  calibrateProfile,
  lowerThresholdAtRate,
  rateUpperBound,
  thresholdAtFpr,
  validateStatistics,
  NUMERIC_STATISTICS,
  parseProfile,
  serializeProfile,
  type Classifier,
  type InputStatistics,
} from '../../src/guard/index.ts';
import { mulberry32 } from '../../scripts/lib/mnist-split.ts';

function syntheticStats(n: number, seed: number): InputStatistics[] {
  const r = mulberry32(seed);
  return Array.from({ length: n }, () => ({
    brightness: 0.1 + 0.05 * r(),
    contrast: 0.9 + 0.1 * r(),
    noise: 0.02 + 0.03 * r() ** 3, // skewed
    blur: 0.1 + 0.2 * r(),
    saturation: 0.7 + 0.2 * r(),
    entropy: 1 + r(),
    width: 28,
    height: 28,
    format: 'png',
  }));
}

test('thresholdAtFpr: at most fpr of the scores exceed the threshold (Xu et al. section V-A)', () => {
  assert.equal(thresholdAtFpr([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.1), 9);
  assert.equal(thresholdAtFpr([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.05), 10);
  fc.assert(
    fc.property(
      fc.array(fc.double({ min: 0, max: 2, noNaN: true }), { minLength: 1, maxLength: 300 }),
      fc.double({ min: 0.001, max: 0.5, noNaN: true }),
      (scores, fpr) => {
        const t = thresholdAtFpr(scores, fpr);
        return scores.filter((s) => s > t).length <= Math.floor(scores.length * fpr);
      },
    ),
  );
  // Floating-point edge (found by fast-check): 2 * (1 - 0.49999999999999994) rounds to 1.
  assert.equal(thresholdAtFpr([0, 5e-324], 0.49999999999999994), 5e-324);
});

test('calibration meets the target FPR on its own data and keeps each statistic in its observed range', async () => {
  const stats = syntheticStats(1000, 7);
  for (const fpr of [0.01, 0.05, 0.2]) {
    const p = await calibrateProfile({ samples: stats.map((s) => ({ stats: s })), fpr });
    assert.ok(p.validation.measuredFpr <= fpr, `fpr ${fpr}: measured ${p.validation.measuredFpr}`);
    // Quantile steps are 1/N per side and statistic, so tiny budgets may be left partly unused.
    if (fpr >= 0.05)
      assert.ok(p.validation.measuredFpr >= fpr * 0.7, `fpr ${fpr}: the budget is used (${p.validation.measuredFpr})`);
    const rejected = stats.filter((s) => !validateStatistics(s, p).passed).length / stats.length;
    assert.equal(rejected, p.validation.measuredFpr);
    for (const s of NUMERIC_STATISTICS) {
      const values = stats.map((x) => x[s]);
      assert.ok(
        p.validation.statistics[s].min >= Math.min(...values) && p.validation.statistics[s].max <= Math.max(...values),
      );
    }
    assert.deepEqual(p.validation.formats, ['png']);
    assert.equal(p.squeeze, undefined, 'no model, no squeezing threshold');
  }
  // Held-out data from the same distribution is rejected at roughly the same rate.
  const p = await calibrateProfile({ samples: stats.map((s) => ({ stats: s })), fpr: 0.05 });
  const held = syntheticStats(4000, 99);
  const rate = held.filter((s) => !validateStatistics(s, p).passed).length / held.length;
  assert.ok(rate < 0.1, `held-out rejection ${rate}`);
});

test('calibration refuses too few samples, a bad rate and non-finite statistics', async () => {
  const stats = syntheticStats(50, 1);
  await assert.rejects(
    calibrateProfile({ samples: stats.slice(0, 5).map((s) => ({ stats: s })), fpr: 0.05 }),
    (e: unknown) => isEdgeguardError(e, 'EG_USAGE'),
  );
  for (const fpr of [0, 1, -0.1, Number.NaN]) {
    await assert.rejects(calibrateProfile({ samples: stats.map((s) => ({ stats: s })), fpr }), (e: unknown) =>
      isEdgeguardError(e, 'EG_USAGE'),
    );
  }
  const bad = stats.map((s, i) => ({ stats: i === 3 ? { ...s, noise: Number.POSITIVE_INFINITY } : s }));
  await assert.rejects(calibrateProfile({ samples: bad, fpr: 0.05 }), (e: unknown) => isEdgeguardError(e, 'EG_INPUT'));
});

test('rateUpperBound is the one-sided Clopper-Pearson bound; allowedCount the largest count within a budget', () => {
  // k = 0 has the closed form 1 - (1 - level)^(1/n).
  assert.ok(Math.abs(rateUpperBound(0, 20, 0.95) - (1 - 0.05 ** (1 / 20))) < 1e-12);
  assert.equal(rateUpperBound(7, 100, 0), 0.07);
  assert.equal(rateUpperBound(10, 10, 0.95), 1);
  assert.ok(rateUpperBound(29, 1000, 0.95) <= 0.04 && rateUpperBound(30, 1000, 0.95) > 0.04);
  assert.equal(allowedCount(1000, 0.04, 0.95), 29);
  assert.equal(allowedCount(1000, 0.04, 0), 40);
  assert.equal(allowedCount(20, 0.1, 0.95), -1, 'no count of 20 bounds the rate at 10%');
  assert.equal(lowerThresholdAtRate([5, 1, 4, 2, 3], 0.2), 2);
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 400 }),
      fc.double({ min: 0.01, max: 0.5, noNaN: true }),
      fc.constantFrom(0, 0.5, 0.9, 0.95, 0.99),
      (n, fpr, level) => {
        const k = allowedCount(n, fpr, level);
        if (k >= 0 && rateUpperBound(k, n, level) > fpr) return false;
        if (k < n && rateUpperBound(k + 1, n, level) <= fpr) return false;
        return k <= Math.floor(n * fpr) + 1;
      },
    ),
    { numRuns: 200 },
  );
});

/** A deterministic toy classifier: softmax of 10 fixed projections of the input. */
function toyClassifier(seed: number): Classifier {
  const r = mulberry32(seed);
  const w = Array.from({ length: 10 }, () => Float64Array.from({ length: 16 }, () => r() * 8 - 4));
  return async (x) => {
    const z = w.map((row) => row.reduce((s, v, i) => s + v * x[i]!, 0));
    const m = Math.max(...z);
    const e = z.map((v) => Math.exp(v - m));
    const t = e.reduce((a, b) => a + b, 0);
    return Float32Array.from(e.map((v) => v / t));
  };
}

test('pipeline calibration: one budget for all stages, chosen on cross-validated counts', async () => {
  const r = mulberry32(5);
  const stats = syntheticStats(600, 11);
  const samples = stats.map((s) => ({ stats: s, tensor: Float32Array.from({ length: 16 }, () => r()) }));
  const common = {
    samples,
    primary: toyClassifier(1),
    ensemble: toyClassifier(2),
    shape: { channels: 1, height: 4, width: 4 },
    squeeze: { bitDepth: 1, medianSize: 2 },
  };
  const p = await calibrateProfile({ ...common, fpr: 0.1 });
  const pl = p.pipeline!;
  assert.equal(p.version, 3, 'with the combiner (combiner: false keeps version 2)');
  assert.equal(pl.fpr, 0.1);
  assert.equal(pl.fprConfidence, 0.95);
  assert.equal(pl.folds, 5);
  assert.ok(pl.upperBound <= 0.1, `upper bound ${pl.upperBound}`);
  assert.ok(pl.crossValidatedFpr * 600 <= allowedCount(600, 0.1, 0.95));
  assert.ok(pl.stageRate > 0 && pl.stageRate <= 0.1);
  assert.equal(p.validation.fpr, pl.stageRate);
  assert.equal(p.squeeze!.fpr, pl.stageRate);
  assert.ok(pl.ensembleThreshold !== undefined && pl.ensembleThreshold >= 0 && pl.ensembleThreshold <= 2);
  assert.ok(p.validation.measuredFpr <= pl.measuredFpr && p.squeeze!.measuredFpr <= pl.measuredFpr);
  // The point estimate (level 0) spends more of the budget than the 95% bound.
  const loose = await calibrateProfile({ ...common, fpr: 0.1, fprConfidence: 0 });
  assert.ok(loose.pipeline!.stageRate >= pl.stageRate);
  assert.ok(loose.pipeline!.crossValidatedFpr <= 0.1);
  // Without the combiner the pipeline profile keeps the version-2 layout.
  const v2 = await calibrateProfile({ ...common, fpr: 0.1, combiner: false });
  assert.equal(v2.version, 2);
  assert.equal(v2.combiner, undefined);
  assert.deepEqual(parseProfile(serializeProfile(v2)), v2);
  // Per-stage mode keeps the old profile layout; mixing the two is refused.
  const perStage = await calibrateProfile({ ...common, fpr: 0.05, pipeline: false, squeezeFpr: 0.02 });
  assert.equal(perStage.pipeline, undefined);
  assert.equal(perStage.version, 1, 'the version-1 layout, readable by older readers');
  assert.equal(perStage.squeeze!.fpr, 0.02);
  await assert.rejects(calibrateProfile({ ...common, fpr: 0.05, squeezeFpr: 0.02 }), (e: unknown) =>
    isEdgeguardError(e, 'EG_USAGE'),
  );
  await assert.rejects(calibrateProfile({ samples, fpr: 0.05, pipeline: true }), (e: unknown) =>
    isEdgeguardError(e, 'EG_USAGE'),
  );
  await assert.rejects(calibrateProfile({ ...common, fpr: 0.05, fprConfidence: 1 }), (e: unknown) =>
    isEdgeguardError(e, 'EG_USAGE'),
  );
});
