/**
 * describeValue() puts a value from outside into an error message without running the value's
 * own toString/valueOf: `[{"toString":0}]` makes String() and template literals throw a TypeError.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describeValue } from '../../src/errors/index.ts';

test('describeValue: JSON text of values String() cannot convert, never a TypeError', () => {
  const hostile = JSON.parse('[{"toString":0}]') as unknown;
  assert.throws(() => String(hostile), TypeError, 'the value this helper exists for');
  assert.equal(describeValue(hostile), '[{"toString":0}]');
  assert.equal(describeValue(JSON.parse('{"toString":0,"valueOf":0}')), '{"toString":0,"valueOf":0}');
  assert.equal(describeValue(2), '2');
  assert.equal(describeValue('v1'), '"v1"');
  assert.equal(describeValue(undefined), 'undefined');
  assert.equal(describeValue(10n), 'bigint');
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  assert.equal(describeValue(cyclic), 'object');
});

test('describeValue: at most max characters', () => {
  const d = describeValue('x'.repeat(500));
  assert.equal(d.length, 40);
  assert.ok(d.endsWith('…'));
  assert.equal(describeValue('x'.repeat(500), 10).length, 10);
});
