/**
 * Property tests of the event log parser on outside bytes: mutated real firmware logs (byte flips,
 * overwritten size fields, truncation, inserted bytes) and random bytes. Whatever the input, the
 * parser and replay return or throw an EG_EVENTLOG_* error: never a crash, never an untyped error.
 * Written logs round-trip through the parser unchanged.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { isEdgeguardError } from '../../src/errors/index.ts';
import { TPM_ALG } from '../../src/tpm/index.ts';
import { encodeEventLog, parseEventLog, replayEventLog, type EventToWrite } from '../../src/eventlog/index.ts';

const FIXTURES = join(import.meta.dirname, 'fixtures');
const LOGS = [
  'crypto_agile_eventlog',
  'coreos_36_shielded_vm_no_secure_boot_eventlog',
  'ebs_event_missing_eventlog',
].map((n) => readFileSync(join(FIXTURES, n)));

function parsesOrRefusesTyped(bytes: Uint8Array): void {
  try {
    replayEventLog(parseEventLog(bytes));
  } catch (e) {
    if (!isEdgeguardError(e) || !e.code.startsWith('EG_EVENTLOG_')) throw e;
  }
}

/** Values that break parsers when written over a length or count field. */
const nastyU32 = fc.constantFrom(0, 1, 2, 20, 32, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff);

type Mutation =
  | { kind: 'flip'; at: number; value: number }
  | { kind: 'u32'; at: number; value: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('u32' as const), at: fc.nat(), value: nastyU32 }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ maxLength: 16 }) }),
);

function mutate(log: Buffer, mutations: Mutation[]): Buffer {
  let out = Buffer.from(log);
  for (const m of mutations) {
    const at = m.at % (out.length + 1);
    if (m.kind === 'flip' && at < out.length) out[at] = m.value;
    else if (m.kind === 'u32' && at + 4 <= out.length) out.writeUInt32LE(m.value, at);
    else if (m.kind === 'truncate') out = out.subarray(0, at);
    else if (m.kind === 'insert') out = Buffer.concat([out.subarray(0, at), m.bytes, out.subarray(at)]);
  }
  return out;
}

test('mutated real logs: parsed or refused with a typed error (60k cases)', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: LOGS.length - 1 }),
      fc.array(mutation, { minLength: 1, maxLength: 4 }),
      (i, ms) => parsesOrRefusesTyped(mutate(LOGS[i]!, ms)),
    ),
    { numRuns: 60_000 },
  );
});

test('random bytes, alone and behind a valid header: parsed or refused with a typed error (40k cases)', () => {
  const header = encodeEventLog([TPM_ALG.SHA1, TPM_ALG.SHA256], []);
  fc.assert(
    fc.property(fc.boolean(), fc.uint8Array({ maxLength: 512 }), (withHeader, bytes) =>
      parsesOrRefusesTyped(withHeader ? Buffer.concat([header, bytes]) : bytes),
    ),
    { numRuns: 40_000 },
  );
});

test('written logs parse back to the same events', () => {
  const banks = [TPM_ALG.SHA1, TPM_ALG.SHA256];
  const event: fc.Arbitrary<EventToWrite> = fc.record({
    pcr: fc.integer({ min: 0, max: 23 }),
    type: fc.integer({ min: 0, max: 0xffffffff }).filter((t) => t !== 3),
    digests: fc
      .tuple(fc.uint8Array({ minLength: 20, maxLength: 20 }), fc.uint8Array({ minLength: 32, maxLength: 32 }))
      .map(([a, b]) => [
        { alg: TPM_ALG.SHA1, digest: Buffer.from(a) },
        { alg: TPM_ALG.SHA256, digest: Buffer.from(b) },
      ]),
    data: fc.uint8Array({ maxLength: 64 }).map((d) => Buffer.from(d)),
  });
  fc.assert(
    fc.property(fc.array(event, { maxLength: 8 }), (events) => {
      const parsed = parseEventLog(encodeEventLog(banks, events)).events.slice(1);
      assert.deepEqual(
        parsed.map(({ pcr, type, digests, data }) => ({ pcr, type, digests, data })),
        events.map((e) => ({ ...e })),
      );
    }),
    { numRuns: 2_000 },
  );
});
