/**
 * The checklist report parser (what the control plane accepts from a device): a report the
 * checklist built passes; every field out of shape, an item twice, totals or a score that its own
 * items do not earn are EG_FORMAT; arbitrary JSON never gets past it untyped.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  buildReport,
  parseChecklistReport,
  type CheckResult,
  type ChecklistReport,
} from '../../src/checklist/index.ts';

const item = (n: number, status: CheckResult['status']): CheckResult => ({
  id: `EG-${String(n).padStart(2, '0')}`,
  title: `item ${n}`,
  audit: 'a',
  status,
  actual: 'x',
  expected: 'y',
  evidence: [{ name: 'e', value: 'v' }],
  remediation: 'r',
});
const good = (): ChecklistReport =>
  buildReport(
    Array.from({ length: 10 }, (_, i) => item(i + 1, i === 2 ? 'FAIL' : i === 6 ? 'NOT-AVAILABLE' : 'PASS')),
    { posture: 'tpm' },
  );
const clone = (r: ChecklistReport) => JSON.parse(JSON.stringify(r)) as ChecklistReport;
const refused = (r: unknown, message: RegExp) =>
  assert.throws(
    () => parseChecklistReport(r),
    (e: { code?: string; message?: string }) => e.code === 'EG_FORMAT' && message.test(e.message ?? ''),
  );

describe('checklist report parser', () => {
  test('a built report passes unchanged', () => {
    const r = clone(good());
    assert.deepEqual(parseChecklistReport(r), r);
    assert.equal(parseChecklistReport(clone(good())).score, 80);
  });

  test('shape, duplicates, totals and score are checked', () => {
    const extra = { ...clone(good()), extra: 1 };
    refused(extra, /invalid/);
    const longText = clone(good());
    longText.controls[0]!.tests[0]!.results[0]!.actual = 'x'.repeat(20_000);
    refused(longText, /actual/);
    const badId = clone(good());
    badId.controls[0]!.tests[0]!.results[0]!.id = 'EG-11';
    refused(badId, /id/);
    const twice = clone(good());
    twice.controls[0]!.tests[1]!.results.push(twice.controls[0]!.tests[0]!.results[0]!);
    refused(twice, /more than once/);
    const totals = clone(good());
    totals.totals.PASS = 10;
    refused(totals, /totals/);
    const score = clone(good());
    score.score = 100;
    refused(score, /score 100 is not the 80/);
    const flipped = clone(good());
    flipped.controls[0]!.tests[1]!.results[0]!.status = 'FAIL';
    refused(flipped, /totals/);
    refused(null, /invalid/);
    refused('report', /invalid/);
  });

  test('arbitrary JSON: a typed refusal or a report, never anything else', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        try {
          parseChecklistReport(v);
        } catch (e) {
          assert.equal((e as { code?: string }).code, 'EG_FORMAT');
        }
      }),
      { numRuns: 2000 },
    );
    // Mutations of a good report's leaves.
    const base = clone(good());
    fc.assert(
      fc.property(fc.nat(9), fc.constantFrom('status', 'id', 'actual', 'evidence'), fc.jsonValue(), (i, key, v) => {
        const r = clone(base);
        const results = r.controls[0]!.tests.flatMap((t) => t.results);
        (results[i] as unknown as Record<string, unknown>)[key] = v;
        try {
          parseChecklistReport(r);
        } catch (e) {
          assert.equal((e as { code?: string }).code, 'EG_FORMAT');
        }
      }),
      { numRuns: 2000 },
    );
  });
});
