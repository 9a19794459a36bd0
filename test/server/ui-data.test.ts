import { test } from 'node:test';
import assert from 'node:assert/strict';
import { storedReasonCodes } from '../../src/server/ui/data.ts';

test('the reason codes of a stored verdict are shown as text whatever the column holds', () => {
  assert.deepEqual(storedReasonCodes('[{"code":"pcr_mismatch","detail":"x"},{"code":"stale_quote"}]'), [
    'pcr_mismatch',
    'stale_quote',
  ]);
  // Values String() would throw on, or print as [object Object], are shown as JSON.
  assert.deepEqual(storedReasonCodes('[{"code":{"toString":0}},{"code":[1]},{"code":null},{}]'), [
    '{"toString":0}',
    '[1]',
    'null',
    'undefined',
  ]);
  assert.deepEqual(storedReasonCodes('["bare", 3]'), ['bare', '3']);
  assert.deepEqual(storedReasonCodes('{"code":"x"}'), []);
  assert.deepEqual(storedReasonCodes('not json'), []);
});
