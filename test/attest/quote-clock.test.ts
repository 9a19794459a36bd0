/**
 * The clock rules of a quote, pure: safe must be YES; (resetCount, restartCount) never go back, in
 * that order (a reset zeroes restartCount); with the counters unchanged the clock must grow; a
 * reset is a REBOOT event, a restart or resume a RESTART event, neither a failure. A real swtpm's counters are
 * covered in test/server/attestation.test.ts.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { checkQuoteClock, type QuoteClock } from '../../src/attest/index.ts';

const last: QuoteClock = { clock: 50_000n, resetCount: 4, restartCount: 2 };
const info = (o: Partial<QuoteClock & { safe: boolean }>) => ({ ...last, safe: true, ...o });
const codes = (c: ReturnType<typeof checkQuoteClock>) => ({
  reasons: c.reasons.map((r) => r.code),
  events: c.events.map((e) => e.code),
});

describe('quote clock rules', () => {
  test('a first quote needs only safe == YES', () => {
    assert.deepEqual(codes(checkQuoteClock(info({}), undefined)), { reasons: [], events: [] });
    assert.deepEqual(codes(checkQuoteClock(info({ safe: false }), undefined)), {
      reasons: ['CLOCK_UNSAFE'],
      events: [],
    });
  });

  test('the clock grows with the counters unchanged', () => {
    assert.deepEqual(codes(checkQuoteClock(info({ clock: 50_001n }), last)), { reasons: [], events: [] });
    assert.deepEqual(codes(checkQuoteClock(info({ clock: 50_000n }), last)), {
      reasons: ['CLOCK_NOT_ADVANCING'],
      events: [],
    });
    assert.deepEqual(codes(checkQuoteClock(info({ clock: 1_000n }), last)), {
      reasons: ['CLOCK_NOT_ADVANCING'],
      events: [],
    });
  });

  test('a reset is a reboot: restartCount back to 0 and any clock are fine', () => {
    const c = checkQuoteClock(info({ resetCount: 5, restartCount: 0, clock: 10n }), last);
    assert.deepEqual(codes(c), { reasons: [], events: ['REBOOT'] });
    assert.match(c.events[0]!.detail, /resetCount 4/);
  });

  test('a restart is a RESTART event', () => {
    assert.deepEqual(codes(checkQuoteClock(info({ restartCount: 3, clock: 10n }), last)), {
      reasons: [],
      events: ['RESTART'],
    });
  });

  test('counters going back fail with their own code', () => {
    assert.deepEqual(codes(checkQuoteClock(info({ resetCount: 3, clock: 90_000n }), last)), {
      reasons: ['RESET_COUNT_DECREASED'],
      events: [],
    });
    assert.deepEqual(codes(checkQuoteClock(info({ restartCount: 1, clock: 90_000n }), last)), {
      reasons: ['RESTART_COUNT_DECREASED'],
      events: [],
    });
    assert.deepEqual(codes(checkQuoteClock(info({ resetCount: 3, safe: false }), last)), {
      reasons: ['CLOCK_UNSAFE', 'RESET_COUNT_DECREASED'],
      events: [],
    });
  });

  test('property: passes exactly when (reset, restart, clock) moves forward lexicographically, with safe', () => {
    const clockInfo = fc.record({
      clock: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
      resetCount: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
      restartCount: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
    });
    fc.assert(
      fc.property(clockInfo, clockInfo, fc.boolean(), (prev, now, safe) => {
        const c = checkQuoteClock({ ...now, safe }, prev);
        const forward =
          now.resetCount > prev.resetCount ||
          (now.resetCount === prev.resetCount &&
            (now.restartCount > prev.restartCount ||
              (now.restartCount === prev.restartCount && now.clock > prev.clock)));
        assert.equal(c.reasons.length === 0, forward && safe);
        assert.ok(c.events.length <= 1);
        assert.ok(c.reasons.length <= 2);
      }),
      { numRuns: 2000 },
    );
  });
});
