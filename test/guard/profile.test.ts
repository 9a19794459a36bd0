import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { isEdgeguardError } from '../../src/errors/index.ts';
import {
  MAX_PROFILE_BYTES,
  NUMERIC_STATISTICS,
  fitTailTable,
  parseProfile,
  serializeProfile,
  validateStatistics,
  type GuardProfile,
  type InputStatistics,
} from '../../src/guard/index.ts';
import { FIXTURES } from '../helpers/workspace.ts';

const FIXTURE = readFileSync(join(FIXTURES, 'guard', 'mnist-cnn.profile.json'));

function valid(): GuardProfile {
  return parseProfile(FIXTURE);
}

function refusesWithFormat(input: Uint8Array | string, pattern?: RegExp): void {
  assert.throws(
    () => parseProfile(input),
    (e: unknown) => isEdgeguardError(e, 'EG_FORMAT') && (!pattern || pattern.test(e.message)),
  );
}

test('the committed pipeline profile (version 3, 4% budget, combiner) parses and round-trips', () => {
  const p = parseProfile(readFileSync(join(FIXTURES, 'guard', 'mnist-cnn.pipeline.profile.json')));
  assert.equal(p.version, 3);
  assert.equal(p.samples, 1000);
  assert.equal(p.pipeline?.fpr, 0.04);
  assert.ok(p.pipeline.upperBound <= 0.04 && p.pipeline.crossValidatedFpr <= p.pipeline.upperBound);
  assert.deepEqual(
    { bitDepth: p.squeeze?.bitDepth, medianSize: p.squeeze?.medianSize },
    { bitDepth: 1, medianSize: 3 },
  );
  assert.ok(p.combiner && p.combiner.upperBound <= 0.04 && p.combiner.threshold > 0);
  assert.equal(p.validation.fpr, p.pipeline.stageRate);
  assert.deepEqual(parseProfile(serializeProfile(p)), p);
});

function pipelineSection(): Record<string, unknown> {
  return {
    fpr: 0.04,
    fprConfidence: 0.95,
    folds: 5,
    stageRate: 0.005,
    confidenceThreshold: 0.48,
    ensembleThreshold: 1.6,
    crossValidatedFpr: 0.024,
    upperBound: 0.034,
    measuredFpr: 0.012,
  };
}

test('the committed profile parses and round-trips', () => {
  const p = valid();
  assert.equal(p.kind, 'edgeguard-guard-profile');
  assert.equal(p.samples, 1000);
  assert.ok(p.squeeze && p.squeeze.threshold > 0 && p.squeeze.threshold <= 2);
  assert.deepEqual(parseProfile(serializeProfile(p)), p);
});

test('bad profiles are refused with EG_FORMAT and the problem named', () => {
  const p = valid();
  const edit = (f: (x: Record<string, unknown>) => void) => {
    const x = JSON.parse(JSON.stringify(p)) as Record<string, unknown>;
    f(x);
    return JSON.stringify(x);
  };
  refusesWithFormat('', /not valid JSON/);
  refusesWithFormat('{"kind":', /not valid JSON/);
  refusesWithFormat(JSON.stringify(p) + 'x', /not valid JSON/);
  refusesWithFormat(Uint8Array.from([0x7b, 0xff, 0x7d]), /UTF-8/);
  refusesWithFormat('null');
  refusesWithFormat('[]');
  refusesWithFormat(
    edit((x) => (x.kind = 'something-else')),
    /kind/,
  );
  refusesWithFormat(
    edit((x) => (x.version = 3)),
    /version/,
  );
  refusesWithFormat(
    edit((x) => (x.pipeline = pipelineSection())),
    /pipeline.*version 2/,
  );
  const v2 = (f: (pl: Record<string, unknown>) => void) =>
    edit((x) => {
      x.version = 2;
      x.pipeline = pipelineSection();
      f(x.pipeline as Record<string, unknown>);
    });
  assert.equal(parseProfile(v2(() => undefined)).pipeline?.ensembleThreshold, 1.6);
  refusesWithFormat(
    v2((pl) => (pl.confidenceThreshold = 1.5)),
    /pipeline\.confidenceThreshold/,
  );
  refusesWithFormat(
    v2((pl) => (pl.ensembleThreshold = 3)),
    /pipeline\.ensembleThreshold/,
  );
  refusesWithFormat(
    v2((pl) => (pl.fpr = 0)),
    /pipeline\.fpr/,
  );
  refusesWithFormat(
    v2((pl) => (pl.folds = 1)),
    /pipeline\.folds/,
  );
  refusesWithFormat(
    v2((pl) => (pl.extra = 1)),
    /Unrecognized key/,
  );
  refusesWithFormat(
    edit((x) => (x.extra = true)),
    /Unrecognized key/,
  );
  refusesWithFormat(
    edit((x) => ((x.validation as { statistics: Record<string, unknown> }).statistics.noise = { min: 0.5, max: 0.1 })),
    /validation\.statistics\.noise.*min must not exceed max/,
  );
  refusesWithFormat(
    edit((x) => delete (x.validation as { statistics: Record<string, unknown> }).statistics.blur),
    /blur/,
  );
  refusesWithFormat(
    edit((x) => ((x.validation as Record<string, unknown>).fpr = 1)),
    /fpr/,
  );
  refusesWithFormat(
    edit((x) => ((x.validation as Record<string, unknown>).formats = [])),
    /formats/,
  );
  refusesWithFormat(
    edit((x) => ((x.squeeze as Record<string, unknown>).threshold = 3)),
    /squeeze\.threshold/,
  );
  refusesWithFormat(
    edit((x) => ((x.squeeze as Record<string, unknown>).threshold = '0.5')),
    /squeeze\.threshold/,
  );
  refusesWithFormat(JSON.stringify(p).replace(/"threshold": ?[0-9.e-]+/, '"threshold": 1e999'), /squeeze\.threshold/);
  refusesWithFormat(' '.repeat(MAX_PROFILE_BYTES + 1), /more than/);
});

test('property: arbitrary bytes never crash the parser (a profile or EG_FORMAT, nothing else)', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 512 }), (bytes) => {
      try {
        parseProfile(bytes);
        return true;
      } catch (e) {
        return isEdgeguardError(e, 'EG_FORMAT');
      }
    }),
    { numRuns: 500 },
  );
});

/** Every single-byte edit of `bytes` parses to a profile meeting `invariant`, or fails with EG_FORMAT. */
function editedBytesParseOrRefuse(bytes: Buffer, invariant: (p: GuardProfile) => boolean): void {
  fc.assert(
    fc.property(fc.nat({ max: bytes.length - 1 }), fc.integer({ min: 0, max: 255 }), (at, value) => {
      const copy = Buffer.from(bytes);
      copy[at] = value;
      try {
        return invariant(parseProfile(copy));
      } catch (e) {
        return isEdgeguardError(e, 'EG_FORMAT');
      }
    }),
    { numRuns: 1000 },
  );
}

test('property: any single edited byte of a valid profile parses to a valid profile or fails with EG_FORMAT', () => {
  editedBytesParseOrRefuse(Buffer.from(serializeProfile(valid())), (p) =>
    NUMERIC_STATISTICS.every((s) => p.validation.statistics[s].min <= p.validation.statistics[s].max),
  );
});

test('property: JSON values of any shape are refused cleanly', () => {
  fc.assert(
    fc.property(fc.jsonValue(), (v) => {
      try {
        parseProfile(JSON.stringify(v) ?? 'null');
        return false; // no random JSON value is a complete profile
      } catch (e) {
        return isEdgeguardError(e, 'EG_FORMAT');
      }
    }),
    { numRuns: 300 },
  );
});

test('validation: inside every bound passes; each violated bound, size or format is reported', () => {
  const p = valid();
  const mid = Object.fromEntries(
    NUMERIC_STATISTICS.map((s) => [s, (p.validation.statistics[s].min + p.validation.statistics[s].max) / 2]),
  ) as Record<(typeof NUMERIC_STATISTICS)[number], number>;
  const ok: InputStatistics = { ...mid, width: 28, height: 28, format: 'png' };
  const r = validateStatistics(ok, p);
  assert.equal(r.passed, true);
  assert.ok(r.score < 0);
  for (const s of NUMERIC_STATISTICS) {
    const bad = validateStatistics({ ...ok, [s]: p.validation.statistics[s].max + 1 }, p);
    assert.equal(bad.passed, false);
    assert.deepEqual(
      bad.violations.map((v) => v.statistic),
      [s],
    );
    assert.ok(bad.score > 0);
    assert.equal(validateStatistics({ ...ok, [s]: Number.NaN }, p).passed, false);
  }
  assert.deepEqual(
    validateStatistics({ ...ok, width: 56 }, p).violations.map((v) => v.statistic),
    ['dimensions'],
  );
  assert.deepEqual(
    validateStatistics({ ...ok, format: 'gif' }, p).violations.map((v) => v.statistic),
    ['format'],
  );
  assert.equal(
    validateStatistics({ ...ok, format: 'gif', width: 56 }, p, { dimensions: false, format: false }).passed,
    true,
  );
});

/** A version-3 profile: the committed one with a pipeline section and a small combiner. */
function versionThree(): Record<string, unknown> {
  const table = fitTailTable([0.1, 0.2, 0.2, 0.4, 0.8]);
  const both = { upper: fitTailTable([1, 2, 3]), lower: fitTailTable([-1, -2, -3]) };
  return {
    ...JSON.parse(JSON.stringify(valid())),
    version: 3,
    pipeline: pipelineSection(),
    combiner: {
      method: 'fisher',
      threshold: 12.5,
      crossValidatedFpr: 0.03,
      upperBound: 0.039,
      measuredFpr: 0.02,
      components: { squeezeMedian: { upper: table }, noise: both },
    },
  };
}

test('version-3 profiles: the combiner section parses; every defect of it is EG_FORMAT', () => {
  const good = versionThree();
  const p = parseProfile(JSON.stringify(good));
  assert.equal(p.version, 3);
  assert.deepEqual(parseProfile(serializeProfile(p)), p);
  type Obj = Record<string, unknown>;
  const edit = (f: (x: Obj) => void) => {
    const x = JSON.parse(JSON.stringify(good)) as Obj;
    f(x);
    return JSON.stringify(x);
  };
  const combiner = (x: Obj) => x.combiner as Obj;
  const components = (x: Obj) => combiner(x).components as Record<string, Obj>;
  refusesWithFormat(
    edit((x) => delete x.combiner),
    /combiner/,
  );
  refusesWithFormat(
    edit((x) => (x.version = 2)),
    /combiner/,
  );
  refusesWithFormat(
    edit((x) => delete x.pipeline),
    /combiner/,
  );
  refusesWithFormat(edit((x) => (combiner(x).method = 'max')));
  refusesWithFormat(edit((x) => (combiner(x).threshold = -1)));
  refusesWithFormat(edit((x) => (components(x).fancy = components(x).noise!)));
  refusesWithFormat(
    edit((x) => (components(x).noise = {})),
    /tail table/,
  );
  const values = (t: Obj) => t.values as Array<number | null>;
  const counts = (t: Obj) => t.atLeast as number[];
  const tableEdits: Array<(t: Obj) => void> = [
    (t) => (t.values = [...values(t)].reverse()),
    (t) => (t.atLeast = [...counts(t)].reverse()),
    (t) => (counts(t)[0] = (t.n as number) + 1),
    (t) => values(t).pop(),
    (t) => (t.values = []),
    (t) => (t.scale = 0),
    (t) => (t.n = 0),
    (t) => (t.values = Array.from({ length: 65 }, (_, i) => i)),
    (t) => (t.extra = 1),
    (t) => (values(t)[1] = null),
  ];
  for (const f of tableEdits) refusesWithFormat(edit((x) => f(components(x).squeezeMedian!.upper as Obj)));
});

test('property: any single edited byte of a version-3 profile parses to a valid one or fails with EG_FORMAT', () => {
  editedBytesParseOrRefuse(Buffer.from(JSON.stringify(versionThree(), null, 2)), (p) =>
    Object.values(p.combiner?.components ?? {})
      .flatMap((c) => [c?.upper, c?.lower])
      .every((t) => t === undefined || t.values.every((v, i) => i === 0 || v > t.values[i - 1]!)),
  );
});
