/**
 * The evidence body's base64 check: the fast form accepts exactly the strings the anchored pattern
 * did, and the body schema refuses non-base64 in each binary member.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { EvidenceRequest, isBase64Text } from '../../src/fleet/index.ts';

const PATTERN = /^[A-Za-z0-9+/]*={0,2}$/;

test('isBase64Text accepts exactly what /^[A-Za-z0-9+/]*={0,2}$/ accepts (fast-check, 50k cases)', () => {
  const near = fc.string({ unit: fc.constantFrom(...'AZaz09+/=-_ \n\u00e9\ud83d'), maxLength: 40 });
  const spliced = fc
    .tuple(fc.base64String({ maxLength: 3000 }), fc.nat(), fc.constantFrom(...'-_ \n=!\u00e9\ud83d'))
    .map(([b, at, c]) => b.slice(0, at % (b.length + 1)) + c + b.slice(at % (b.length + 1)));
  fc.assert(
    fc.property(fc.oneof(near, spliced, fc.base64String({ maxLength: 60 }), fc.string()), (s) => {
      assert.equal(isBase64Text(s), PATTERN.test(s), JSON.stringify(s));
    }),
    { numRuns: 50_000 },
  );
  for (const s of ['', '=', '==', '===', 'AA==', 'AA=A', 'A===', 'AAA=\n'])
    assert.equal(isBase64Text(s), PATTERN.test(s), JSON.stringify(s));
});

test('the evidence schema refuses non-base64 in quote, signature and eventLog, and names the member', () => {
  const good = { nonce: 'ab'.repeat(32), quote: 'AAAA', signature: 'AA==', eventLog: 'A'.repeat(4000) };
  assert.ok(EvidenceRequest.safeParse(good).success);
  for (const member of ['quote', 'signature', 'eventLog'] as const) {
    const r = EvidenceRequest.safeParse({ ...good, [member]: 'AA==AA' });
    assert.equal(r.success, false, member);
    assert.deepEqual(r.error?.issues[0]?.path, [member]);
  }
});
