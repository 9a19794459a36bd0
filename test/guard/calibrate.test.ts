import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { isEdgeguardError } from '../../src/errors/index.ts';
import { calibrateProfile, thresholdAtFpr, validateStatistics, NUMERIC_STATISTICS, type InputStatistics } from '../../src/guard/index.ts';
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
    fc.property(fc.array(fc.double({ min: 0, max: 2, noNaN: true }), { minLength: 1, maxLength: 300 }), fc.double({ min: 0.001, max: 0.5, noNaN: true }), (scores, fpr) => {
      const t = thresholdAtFpr(scores, fpr);
      return scores.filter((s) => s > t).length <= Math.floor(scores.length * fpr);
    }),
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
    if (fpr >= 0.05) assert.ok(p.validation.measuredFpr >= fpr * 0.7, `fpr ${fpr}: the budget is used (${p.validation.measuredFpr})`);
    const rejected = stats.filter((s) => !validateStatistics(s, p).passed).length / stats.length;
    assert.equal(rejected, p.validation.measuredFpr);
    for (const s of NUMERIC_STATISTICS) {
      const values = stats.map((x) => x[s]);
      assert.ok(p.validation.statistics[s].min >= Math.min(...values) && p.validation.statistics[s].max <= Math.max(...values));
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
  await assert.rejects(calibrateProfile({ samples: stats.slice(0, 5).map((s) => ({ stats: s })), fpr: 0.05 }), (e: unknown) => isEdgeguardError(e, 'EG_USAGE'));
  for (const fpr of [0, 1, -0.1, Number.NaN]) {
    await assert.rejects(calibrateProfile({ samples: stats.map((s) => ({ stats: s })), fpr }), (e: unknown) => isEdgeguardError(e, 'EG_USAGE'));
  }
  const bad = stats.map((s, i) => ({ stats: i === 3 ? { ...s, noise: Number.POSITIVE_INFINITY } : s }));
  await assert.rejects(calibrateProfile({ samples: bad, fpr: 0.05 }), (e: unknown) => isEdgeguardError(e, 'EG_INPUT'));
});
