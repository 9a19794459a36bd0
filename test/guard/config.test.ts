import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isEdgeguardError } from '../../src/errors/index.ts';
import { DEFAULT_CONFIDENCE_THRESHOLD, guardConfig, parseGuardConfigYaml } from '../../src/guard/index.ts';

test('an empty configuration gives the full pipeline; thresholds come from the profile, else 0.85 for confidence', () => {
  assert.equal(DEFAULT_CONFIDENCE_THRESHOLD, 0.85);
  for (const c of [guardConfig(), guardConfig(null), parseGuardConfigYaml(''), parseGuardConfigYaml('{}')]) {
    assert.equal(c.validation.enabled, true);
    assert.equal(c.confidence.enabled, true);
    assert.equal(
      c.confidence.threshold,
      undefined,
      "the profile's calibrated value, else DEFAULT_CONFIDENCE_THRESHOLD",
    );
    assert.equal(c.ensemble.enabled, true);
    assert.equal(c.ensemble.threshold, undefined);
    assert.equal(c.squeeze.enabled, true);
    assert.equal(c.squeeze.bitDepth, undefined, 'the profile names its squeezers');
    assert.equal(c.squeeze.medianSize, undefined);
    assert.equal(c.squeeze.threshold, undefined);
  }
  const c = parseGuardConfigYaml(
    'profile: p.json\nconfidence:\n  threshold: 0.9\nensemble: { enabled: false, threshold: 1.2 }\nsqueeze: { threshold: 0.5 }\n',
  );
  assert.equal(c.profile, 'p.json');
  assert.equal(c.confidence.threshold, 0.9);
  assert.equal(c.ensemble.enabled, false);
  assert.equal(c.ensemble.threshold, 1.2);
  assert.equal(c.squeeze.threshold, 0.5);
});

test('bad configurations are refused with EG_CONFIG naming the field', () => {
  const bad: Array<[string, RegExp]> = [
    ['confidence: { threshold: 1.5 }', /confidence\.threshold/],
    ['confidence: { treshold: 0.9 }', /Unrecognized key/],
    ['squeeze: { threshold: -1 }', /squeeze\.threshold/],
    ['ensemble: { threshold: 2.5 }', /ensemble\.threshold/],
    ['squeeze: { bitDepth: 0 }', /squeeze\.bitDepth/],
    ['validation: yes', /validation/],
    ['- a\n- b', /top level/],
    ['a: [unclosed', /not valid YAML/],
  ];
  for (const [yaml, pattern] of bad) {
    assert.throws(
      () => parseGuardConfigYaml(yaml),
      (e: unknown) => isEdgeguardError(e, 'EG_CONFIG') && pattern.test(e.message),
      yaml,
    );
  }
});
