/**
 * The sealed review item format (bad input, property tests) and the bounded spool (oldest dropped
 * with an event). Delivery to the control plane is tested with the agent (test/agent/review.test.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { generateSealKeyPair } from '../../src/crypto/index.ts';
import { isEdgeguardError, EdgeguardError } from '../../src/errors/index.ts';
import { openReviewItem, parseReviewItem, sealReviewItem, ReviewSpool } from '../../src/fleet/index.ts';
import { tempDir } from '../helpers/workspace.ts';
const META = {
  contentType: 'image/png',
  verdict: 'flag' as const,
  reasons: [{ stage: 'ensemble', code: 'ensemble-disagreement', message: 'x' }],
};

test('a sealed item round-trips; its layout is parsed strictly', () => {
  const k = generateSealKeyPair();
  const input = Buffer.from('input bytes that must stay private');
  const { id, bytes } = sealReviewItem(k.publicKey, META, input);
  const opened = openReviewItem(bytes, k.privateKey);
  assert.equal(opened.header.id, id);
  assert.deepEqual(opened.input, input);
  assert.equal(opened.metadata.verdict, 'flag');
  assert.equal(bytes.includes(input), false);
  const code = (b: Uint8Array) => {
    try {
      parseReviewItem(b);
      return 'parsed';
    } catch (e) {
      assert.ok(isEdgeguardError(e), String(e));
      return e.code;
    }
  };
  assert.equal(code(bytes.subarray(0, 10)), 'EG_TRUNCATED');
  assert.equal(code(bytes.subarray(0, bytes.length - 1)), 'EG_TRUNCATED');
  assert.equal(code(Buffer.concat([bytes, Buffer.from([0])])), 'EG_TRAILING_DATA');
  const bad = (at: number, v: number) => {
    const b = Buffer.from(bytes);
    b[at] = v;
    return b;
  };
  assert.equal(code(bad(0, 0x58)), 'EG_FORMAT');
  assert.equal(code(bad(4, 2)), 'EG_UNSUPPORTED');
  assert.equal(code(bad(6, 0x10)), 'EG_UNSUPPORTED');
  assert.equal(code(bad(10, 1)), 'EG_UNSUPPORTED');
  const len = Buffer.from(bytes);
  len.writeUInt32BE(3, 75);
  assert.equal(code(len), 'EG_FORMAT');
  // The id and time are authenticated: changing them makes the item unopenable.
  const idChanged = bad(20, bytes[20]! ^ 1);
  assert.throws(
    () => openReviewItem(idChanged, k.privateKey),
    (e) => isEdgeguardError(e, 'EG_WRONG_KEY'),
  );
  // Another key is refused before any decryption is attempted.
  assert.throws(
    () => openReviewItem(bytes, generateSealKeyPair().privateKey),
    (e) => isEdgeguardError(e, 'EG_WRONG_KEY'),
  );
});

test('metadata members that are not of their type are refused with EG_FORMAT, not a TypeError when printed', () => {
  const k = generateSealKeyPair();
  const hostile: unknown[] = [[{ toString: 0 }], { toString: 0, valueOf: 0 }];
  for (const v of hostile) {
    for (const meta of [
      { ...META, reasons: [{ ...META.reasons[0], code: v }] },
      { ...META, answer: { source: 'primary', label: v, confidence: 0.5 } },
      { ...META, primary: { label: 'cat', confidence: v } },
      { ...META, contentType: v },
      { ...META, reasons: v },
    ]) {
      const { bytes } = sealReviewItem(k.publicKey, meta as never, Buffer.from('x'));
      assert.throws(
        () => openReviewItem(bytes, k.privateKey),
        (e) => isEdgeguardError(e, 'EG_FORMAT'),
        JSON.stringify(meta),
      );
    }
  }
  // Members a later agent adds are kept.
  const { bytes } = sealReviewItem(k.publicKey, { ...META, extra: 1 } as never, Buffer.from('x'));
  assert.equal((openReviewItem(bytes, k.privateKey).metadata as unknown as { extra: number }).extra, 1);
});

test('property: arbitrary bytes and single-byte changes never open and never throw untyped errors', () => {
  const k = generateSealKeyPair();
  const { bytes } = sealReviewItem(k.publicKey, META, Buffer.from('x'.repeat(100)));
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 400 }), (b) => {
      try {
        openReviewItem(b, k.privateKey);
        assert.fail('random bytes opened');
      } catch (e) {
        assert.ok(e instanceof EdgeguardError, String(e));
      }
    }),
    { numRuns: 300 },
  );
  fc.assert(
    fc.property(fc.nat(bytes.length - 1), fc.integer({ min: 1, max: 255 }), (at, x) => {
      const b = Buffer.from(bytes);
      b[at]! ^= x;
      try {
        openReviewItem(b, k.privateKey);
        assert.fail(`a change at byte ${at} still opened`);
      } catch (e) {
        assert.ok(e instanceof EdgeguardError, String(e));
      }
    }),
    { numRuns: 300 },
  );
});

test('the spool is bounded: the oldest items are dropped with an event; reopening re-indexes', async (t) => {
  const dir = join(await tempDir(t), 'spool');
  const k = generateSealKeyPair();
  const dropped: Array<[string, string]> = [];
  const spool = await ReviewSpool.open({
    dir,
    maxItems: 3,
    maxBytes: 1 << 20,
    events: { dropped: (e, reason) => dropped.push([e.id, reason]) },
  });
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) {
    const { id, bytes } = sealReviewItem(k.publicKey, META, Buffer.alloc(100, i), 1_700_000_000_000 + i);
    ids.push(id);
    await spool.add(bytes);
  }
  assert.deepEqual(dropped, [
    [ids[0], 'max-items'],
    [ids[1], 'max-items'],
  ]);
  assert.deepEqual(
    spool.list().map((e) => e.id),
    ids.slice(2),
  );
  assert.equal((await readdir(dir)).length, 3);
  // A byte budget: one item is about 100 + 79 + 16 + metadata bytes.
  const small = await ReviewSpool.open({
    dir,
    maxItems: 100,
    maxBytes: spool.list()[0]!.bytes * 2 + 10,
    events: { dropped: (e, reason) => dropped.push([e.id, reason]) },
  });
  assert.equal(small.items, 2, 'reopening enforced the byte budget on existing items');
  assert.deepEqual(dropped.at(-1), [ids[2], 'max-bytes']);
  // A stray temporary file (a crash mid-write) is removed; foreign files are ignored.
  await writeFile(join(dir, '0000000000000001-00000000000000000000000000000000.egr.tmp'), 'partial');
  await writeFile(join(dir, 'README'), 'x');
  const again = await ReviewSpool.open({ dir, maxItems: 100, maxBytes: 1 << 20 });
  assert.deepEqual(
    again.list().map((e) => e.id),
    ids.slice(3),
  );
  assert.deepEqual(
    (await readdir(dir)).sort().filter((n) => n.endsWith('.tmp')),
    [],
  );
  await assert.rejects(again.add(Buffer.from('not an item')), (e) => isEdgeguardError(e));
});
