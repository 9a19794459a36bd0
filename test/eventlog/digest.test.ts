/**
 * The one-shot digests the parser, the replay and the Secure Boot reading use (src/eventlog/digest.ts)
 * are the bytes createHash gives, in every bank; and GUIDs print as their text form.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { digestOf } from '../../src/eventlog/digest.ts';
import { EFI_GLOBAL_VARIABLE, EFI_IMAGE_SECURITY_DATABASE, formatGuid } from '../../src/eventlog/index.ts';
import { guidBytes } from '../../src/eventlog/uefi.ts';

test('digestOf equals createHash in every bank (fast-check, 2,000 inputs)', () => {
  fc.assert(
    fc.property(
      fc.constantFrom('sha1', 'sha256', 'sha384', 'sha512'),
      fc.uint8Array({ maxLength: 2048 }),
      (alg, data) => {
        assert.deepEqual(digestOf(alg, data), createHash(alg).update(data).digest());
      },
    ),
    { numRuns: 2000 },
  );
});

test('formatGuid prints the registry form (first three fields little-endian), the inverse of guidBytes', () => {
  // EFI_GLOBAL_VARIABLE as the bytes firmware writes it.
  const bytes = Buffer.from('61dfe48bca93d211aa0d00e098032b8c', 'hex');
  assert.equal(formatGuid(bytes), EFI_GLOBAL_VARIABLE);
  assert.equal(
    formatGuid(Buffer.concat([Buffer.alloc(3), guidBytes(EFI_IMAGE_SECURITY_DATABASE)]).subarray(3)),
    EFI_IMAGE_SECURITY_DATABASE,
  );
  fc.assert(
    fc.property(fc.uuid(), (uuid) => {
      assert.equal(formatGuid(guidBytes(uuid)), uuid);
    }),
    { numRuns: 1000 },
  );
});
