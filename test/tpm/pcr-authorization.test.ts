/**
 * The PCR authorization file (no TPM): a signed file round-trips; each kind of damage fails with
 * its own typed code (altered value, altered signature, another signer, unknown member, other
 * version, oversize, a tamper PCR that is not zero); and fast-check properties: any byte flipped in
 * the signature, any text mutation of the file, and arbitrary JSON values in any member, are either
 * refused with an EdgeguardError or (for mutations that keep the meaning, e.g. whitespace) accepted
 * with the same approved digest, never an untyped exception.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { EdgeguardError, isEdgeguardError } from '../../src/errors/index.ts';
import {
  PCR_AUTHORIZATION_MAX_BYTES,
  parsePcrAuthorization,
  parsePcrSelection,
  policyPcrDigest,
  signPcrAuthorization,
  TPM_ALG,
  type PcrValues,
} from '../../src/tpm/index.ts';

const operator = generateKeyPairSync('rsa', { modulusLength: 2048 });
const stranger = generateKeyPairSync('rsa', { modulusLength: 2048 });
const selection = parsePcrSelection('sha256:0,4,7,16+sha1:7');
const values: PcrValues = {
  sha256: { 0: randomBytes(32), 4: randomBytes(32), 7: randomBytes(32), 16: Buffer.alloc(32) },
  sha1: { 7: randomBytes(20) },
};
const file = signPcrAuthorization({ privateKey: operator.privateKey, selection, values, label: 'kernel 6.1.0-28' });
const text = JSON.stringify(file, null, 2);
const signerKey = operator.publicKey;

function typed(f: () => unknown): EdgeguardError | undefined {
  try {
    f();
    return undefined;
  } catch (e) {
    assert.ok(e instanceof EdgeguardError, `untyped error: ${String(e)}`);
    return e;
  }
}

describe('PCR authorization file', () => {
  test('a signed file parses and its approved digest is PolicyPCR of its values', () => {
    const p = parsePcrAuthorization(text, { signerKey });
    assert.deepEqual(p.approvedPolicy, policyPcrDigest(selection, values, TPM_ALG.SHA256));
    assert.equal(p.signature.length, 256);
    assert.equal(p.file.label, 'kernel 6.1.0-28');
  });

  test('each damage has its code', () => {
    const edit = (f: (o: Record<string, unknown>) => void) => {
      const o = JSON.parse(text) as Record<string, unknown>;
      f(o);
      return JSON.stringify(o);
    };
    const code = (t: string, opts = { signerKey }) => typed(() => parsePcrAuthorization(t, opts))?.code;
    assert.equal(
      code(edit((o) => ((o.pcrValues as Record<string, Record<string, string>>).sha256!['4'] = '00'.repeat(32)))),
      'EG_TAMPERED',
    );
    const sig = Buffer.from(file.signature, 'base64');
    sig[10]! ^= 1;
    assert.equal(code(edit((o) => (o.signature = sig.toString('base64')))), 'EG_SIGNATURE_INVALID');
    assert.equal(code(text, { signerKey: stranger.publicKey }), 'EG_WRONG_KEY');
    assert.equal(code(edit((o) => (o.extra = 1))), 'EG_FORMAT');
    assert.equal(code(edit((o) => (o.version = 2))), 'EG_UNSUPPORTED');
    assert.equal(code(edit((o) => (o.pcrs = 'sha256:4,0,7,16+sha1:7'))), 'EG_FORMAT');
    assert.equal(code(edit((o) => (o.policyRef = '00'))), 'EG_FORMAT');
    assert.equal(code(edit((o) => delete (o.pcrValues as Record<string, unknown>).sha1)), 'EG_FORMAT');
    assert.equal(code(' '.repeat(PCR_AUTHORIZATION_MAX_BYTES + 1)), 'EG_FILE_TOO_LARGE');
    assert.equal(code('[]'), 'EG_FORMAT');
    assert.equal(code('{'), 'EG_FORMAT');
  });

  test('signing refuses a tamper PCR that is not zero (it would undo the tamper lock)', () => {
    const extended = { ...values, sha256: { ...values.sha256, 16: randomBytes(32) } };
    const e = typed(() => signPcrAuthorization({ privateKey: operator.privateKey, selection, values: extended }));
    assert.ok(isEdgeguardError(e, 'EG_USAGE'));
    assert.match(e!.message, /tamper/);
    assert.doesNotThrow(() =>
      signPcrAuthorization({ privateKey: operator.privateKey, selection, values: extended, allowTamperPcr: true }),
    );
  });

  test('property: any bit flipped in the signature is refused', () => {
    const sig = Buffer.from(file.signature, 'base64');
    fc.assert(
      fc.property(fc.integer({ min: 0, max: sig.length * 8 - 1 }), (bit) => {
        const s = Buffer.from(sig);
        s[bit >> 3]! ^= 1 << (bit & 7);
        const t = JSON.stringify({ ...file, signature: s.toString('base64') });
        assert.equal(typed(() => parsePcrAuthorization(t, { signerKey }))?.code, 'EG_SIGNATURE_INVALID');
      }),
      { numRuns: 300 },
    );
  });

  test('property: text mutations are refused typed, or keep the approved digest', () => {
    const want = parsePcrAuthorization(text).approvedPolicy;
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: text.length - 1 }),
        fc.integer({ min: 0, max: 8 }),
        fc.string({ maxLength: 8 }),
        (at, del, ins) => {
          const t = text.slice(0, at) + ins + text.slice(at + del);
          let parsed;
          const e = typed(() => (parsed = parsePcrAuthorization(t, { signerKey })));
          if (!e) assert.deepEqual((parsed as unknown as { approvedPolicy: Buffer }).approvedPolicy, want);
        },
      ),
      { numRuns: 3000 },
    );
  });

  test('a version that String() cannot convert is refused typed (a counterexample fast-check found)', () => {
    const o = { ...JSON.parse(text), version: [{ toString: 0 }] };
    assert.ok(typed(() => parsePcrAuthorization(JSON.stringify(o), { signerKey })));
  });

  test('property: arbitrary JSON in any member is refused typed', () => {
    const members = Object.keys(file);
    fc.assert(
      fc.property(fc.constantFrom(...members), fc.jsonValue(), (member, value) => {
        const o = { ...JSON.parse(text), [member]: value };
        const e = typed(() => parsePcrAuthorization(JSON.stringify(o), { signerKey }));
        if (!e)
          assert.equal(
            member === 'label' || member === 'createdAt',
            true,
            `accepted ${member}=${JSON.stringify(value)}`,
          );
      }),
      { numRuns: 3000 },
    );
  });

  test('property: arbitrary bytes are refused typed', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), (bytes) => {
        assert.ok(typed(() => parsePcrAuthorization(Buffer.from(bytes).toString('latin1'))));
      }),
      { numRuns: 2000 },
    );
  });
});
