/**
 * Refusals made at a client's pace carry no stack trace: Node's streams format an error's stack
 * when it passes through them, which cost more than the refusal itself (bench/hostile.ts). What
 * the caller sees (code, message, status) is the same as for any EdgeguardError.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BodyBudget } from '../../src/agent/body-budget.ts';
import { Slots } from '../../src/agent/slots.ts';
import { EdgeguardError, isEdgeguardError, refusal } from '../../src/errors/index.ts';
import { checkImageStructure } from '../../src/runtime/index.ts';

function assertStackless(e: unknown, code: string): void {
  assert.ok(isEdgeguardError(e), String(e));
  assert.equal(e.code, code);
  assert.equal(e.stack, `EdgeguardError: ${e.message}`, 'no stack frames');
}

test('refusal(): an EdgeguardError whose stack is its name and message; other errors keep theirs', async () => {
  const r = refusal('EG_INPUT', 'not an image.', { details: { at: 3 } });
  assert.ok(r instanceof EdgeguardError);
  assert.deepEqual(r.toJSON(), { code: 'EG_INPUT', message: 'not an image.', details: { at: 3 } });
  assertStackless(r, 'EG_INPUT');
  // The stack trace limit is restored: ordinary errors still have frames.
  assert.match(new EdgeguardError('EG_INPUT', 'x').stack ?? '', /\n\s+at /);
  // Through a stream, as the agent's body check passes it.
  const failing = new Transform({ transform: (_c, _e, done) => done(refusal('EG_INPUT', 'refused.')) });
  await assert.rejects(pipeline(Readable.from([Buffer.from('x')]), failing), (e) => {
    assertStackless(e, 'EG_INPUT');
    return true;
  });
});

test("the agent's refusals at a client's pace are stackless: image structure, slots, body budget", async () => {
  assertStackless(checkImageStructure('image/png', Buffer.from('not a png'), 1000), 'EG_INPUT');
  assertStackless(
    checkImageStructure('image/png', Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 1]), 1000),
    'EG_INPUT',
  );
  const slots = new Slots(1);
  slots.acquire();
  assert.throws(
    () => slots.acquire(),
    (e) => (assertStackless(e, 'EG_OVERLOADED'), true),
  );
  const budget = new BodyBudget({ limitBytes: 100, smallBytes: 10, waitMs: 1000, maxWaiting: 0 });
  await budget.reserve(100, 1000);
  await assert.rejects(budget.reserve(50, 1000), (e) => (assertStackless(e, 'EG_OVERLOADED'), true));
});
