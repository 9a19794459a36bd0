import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { isEdgeguardError } from '../../src/errors/index.ts';
import {
  AUDIT_EVENT_TYPES,
  canonicalJson,
  decodeLogLeaf,
  encodeLogLeaf,
  parseAuditEvent,
  type AuditEvent,
  type LogLeaf,
} from '../../src/audit/events.ts';

const T = '2026-11-25T20:00:00.000Z';
const HEX = 'ab'.repeat(32);

export const SAMPLE_EVENTS: AuditEvent[] = [
  {
    type: 'device.enrollment_requested',
    time: T,
    actor: { kind: 'device', id: 'dev-1' },
    outcome: 'success',
    details: { deviceId: 'dev-1', ekSha256: HEX, keyProvider: 'tpm' },
  },
  {
    type: 'device.approved',
    time: T,
    actor: { kind: 'admin', id: 'alice' },
    subject: 'dev-1',
    outcome: 'success',
    details: { deviceId: 'dev-1', approvedBy: 'alice' },
  },
  {
    type: 'guard.rejected',
    time: T,
    actor: { kind: 'device', id: 'dev-1' },
    outcome: 'denied',
    details: { check: 'squeeze', score: 1_420_000, threshold: 900_000, queuedForReview: true },
  },
  {
    type: 'tamper.detected',
    time: T,
    actor: { kind: 'device', id: 'dev-1' },
    outcome: 'failure',
    details: { sensor: 'case-open', detail: 'lid switch opened' },
  },
];

test('every event type has a schema, and sample events validate', () => {
  assert.ok(AUDIT_EVENT_TYPES.length >= 15);
  for (const t of [
    'device.enrollment_requested',
    'device.approved',
    'device.revoked',
    'cert.issued',
    'attestation.result',
    'release.published',
    'model.loaded',
    'guard.flagged',
    'guard.rejected',
    'tamper.detected',
    'admin.action',
    'policy.changed',
  ]) {
    assert.ok(AUDIT_EVENT_TYPES.includes(t as never), t);
  }
  for (const e of SAMPLE_EVENTS) assert.deepEqual(parseAuditEvent(e), e);
});

test('invalid events are refused with EG_FORMAT naming the field', () => {
  const good = SAMPLE_EVENTS[1] as AuditEvent;
  const bad: unknown[] = [
    null,
    'x',
    { ...good, type: 'device.exploded' },
    { ...good, time: '2026-11-25 20:00' },
    { ...good, actor: { kind: 'root', id: 'x' } },
    { ...good, extra: 1 },
    { ...good, details: { deviceId: 'dev-1' } },
    { ...good, details: { deviceId: 'dev-1', approvedBy: 'alice', more: true } },
    { ...SAMPLE_EVENTS[2], details: { check: 'squeeze', score: 1.42, threshold: 900_000, queuedForReview: true } },
  ];
  for (const b of bad) {
    assert.throws(
      () => parseAuditEvent(b),
      (e: unknown) => isEdgeguardError(e, 'EG_FORMAT'),
      JSON.stringify(b),
    );
  }
  assert.throws(() => parseAuditEvent({ ...good, details: {} }), /details/);
});

test('canonical JSON sorts keys, drops undefined, refuses floats', () => {
  assert.equal(
    canonicalJson({ b: 1, a: [true, null, 'x\u2028"'], c: undefined, é: { z: 0, y: -3 } }),
    '{"a":[true,null,"x\u2028\\""],"b":1,"é":{"y":-3,"z":0}}',
  );
  assert.throws(
    () => canonicalJson({ a: 0.5 }),
    (e: unknown) => isEdgeguardError(e, 'EG_FORMAT'),
  );
  assert.throws(
    () => canonicalJson(new Date()),
    (e: unknown) => isEdgeguardError(e, 'EG_FORMAT'),
  );
});

test('log leaves encode canonically and decode only canonical bytes', () => {
  const leaf: LogLeaf = { v: 1, event: SAMPLE_EVENTS[0] as AuditEvent, origin: { kind: 'server' }, loggedAt: T };
  const bytes = encodeLogLeaf(leaf);
  assert.deepEqual(decodeLogLeaf(bytes), leaf);
  const pretty = Buffer.from(JSON.stringify(leaf, null, 1));
  assert.throws(
    () => decodeLogLeaf(pretty),
    (e: unknown) => isEdgeguardError(e, 'EG_FORMAT'),
  );
  assert.throws(
    () => decodeLogLeaf(Buffer.from('{')),
    (e: unknown) => isEdgeguardError(e, 'EG_FORMAT'),
  );
  assert.throws(
    () => decodeLogLeaf(Buffer.from(canonicalJson({ ...leaf, v: 2 }))),
    (e: unknown) => isEdgeguardError(e, 'EG_FORMAT'),
  );
});

test('property: arbitrary bytes decode as a leaf only if canonical, never with an untyped error', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
      try {
        const leaf = decodeLogLeaf(bytes);
        assert.deepEqual(encodeLogLeaf(leaf), Buffer.from(bytes));
      } catch (e) {
        assert.ok(isEdgeguardError(e, 'EG_FORMAT'));
      }
    }),
    { numRuns: 300 },
  );
});

test('property: canonical JSON is stable under key order', () => {
  fc.assert(
    fc.property(fc.dictionary(fc.string(), fc.oneof(fc.integer(), fc.string(), fc.boolean())), (obj) => {
      const reversed = Object.fromEntries(Object.entries(obj).reverse());
      assert.equal(canonicalJson(obj), canonicalJson(reversed));
      assert.equal(canonicalJson(JSON.parse(canonicalJson(obj))), canonicalJson(obj));
    }),
  );
});
