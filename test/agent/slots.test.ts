/**
 * The concurrency slots: large-body requests take half the slots at most, so small requests
 * are still served while a crowd of large garbage images is being decoded (bench/hostile.ts: 2%
 * to 8% of legitimate requests got 429 before).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Slots } from '../../src/agent/slots.ts';

test('large requests take half the slots at most; the rest are for small requests', () => {
  const slots = new Slots(4);
  const large = [slots.acquire(true), slots.acquire(true)];
  assert.throws(() => slots.acquire(true), { code: 'EG_OVERLOADED', message: /the rest are kept for small ones/ });
  const small = [slots.acquire(false), slots.acquire(false)];
  assert.throws(() => slots.acquire(false), { code: 'EG_OVERLOADED', message: /concurrency limit \(4 requests\)/ });
  // A released large slot is free for either kind again; releasing twice counts once.
  slots.release(large[0]!);
  slots.release(large[0]!);
  assert.equal(slots.inflight, 3);
  const again = slots.acquire(true);
  assert.throws(() => slots.acquire(true), { code: 'EG_OVERLOADED' });
  for (const s of [...large.slice(1), ...small, again]) slots.release(s);
  assert.equal(slots.inflight, 0);
});

test('with a limit of one, the one slot is for any request', () => {
  const slots = new Slots(1);
  const large = slots.acquire(true);
  assert.throws(() => slots.acquire(false), { code: 'EG_OVERLOADED' });
  slots.release(large);
  slots.release(slots.acquire(false));
});
