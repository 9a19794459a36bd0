/**
 * binding.certify.json verified in pure TypeScript, from evidence recorded on swtpm
 * (test/tpm/fixtures/swtpm-recorded.json): accepted as recorded; each field altered, swapped or
 * garbled is refused with a typed error (fast-check), never a crash.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { EdgeguardError, isEdgeguardError } from '../../src/errors/index.ts';
import {
  CERTIFY_EVIDENCE_TYPE,
  parseCertifyEvidence,
  verifyCertifyEvidence,
  type CertifyEvidence,
} from '../../src/keystore/index.ts';

const fx = JSON.parse(readFileSync(new URL('../tpm/fixtures/swtpm-recorded.json', import.meta.url), 'utf8')) as Record<
  string,
  string
>;
const b64 = (k: string) => Buffer.from(fx[k]!, 'hex').toString('base64');
const evidence: CertifyEvidence = {
  type: CERTIFY_EVIDENCE_TYPE,
  version: 1,
  bindingPublic: b64('bindingPublic'),
  bindingName: fx.bindingName!,
  akPublic: b64('akPublic'),
  akName: fx.akName!,
  attest: b64('certifyAttest'),
  signature: b64('certifySignature'),
  ekPublic: b64('ekPublic'),
};

describe('binding.certify.json', () => {
  test('recorded evidence verifies, with binding.pub and the trusted AK', () => {
    const parsed = parseCertifyEvidence(JSON.stringify(evidence));
    const v = verifyCertifyEvidence(parsed, {
      bindingPem: fx.bindingPem!,
      trustedAkPublic: Buffer.from(fx.akPublic!, 'hex'),
    });
    assert.equal(v.bindingName, fx.bindingName);
    assert.equal(v.policyDigest, fx.bindingPolicy);
  });

  test('refusals: another AK, another binding.pub, names that do not match, a key that is not a binding key', () => {
    assert.throws(
      () => verifyCertifyEvidence(evidence, { trustedAkPublic: Buffer.from(fx.eccPublic!, 'hex') }),
      (e: unknown) => isEdgeguardError(e, 'EG_SIGNATURE_INVALID'),
    );
    assert.throws(
      () => verifyCertifyEvidence(evidence, { bindingPem: fx.eccPem! }),
      (e: unknown) => isEdgeguardError(e, 'EG_SIGNATURE_INVALID'),
    );
    assert.throws(
      () => verifyCertifyEvidence(evidence, { bindingPem: 'not a pem' }),
      (e: unknown) => isEdgeguardError(e, 'EG_KEY_FORMAT'),
    );
    assert.throws(
      () => verifyCertifyEvidence({ ...evidence, bindingName: fx.akName! }),
      (e: unknown) => isEdgeguardError(e, 'EG_SIGNATURE_INVALID'),
    );
    assert.throws(
      () => verifyCertifyEvidence({ ...evidence, akName: fx.bindingName! }),
      (e: unknown) => isEdgeguardError(e, 'EG_SIGNATURE_INVALID'),
    );
    assert.throws(
      () => verifyCertifyEvidence({ ...evidence, bindingPublic: b64('eccPublic') }),
      (e: unknown) => isEdgeguardError(e, 'EG_SIGNATURE_INVALID'),
    );
    assert.throws(
      () => parseCertifyEvidence(JSON.stringify({ ...evidence, extra: 1 })),
      (e: unknown) => isEdgeguardError(e, 'EG_FORMAT'),
    );
    assert.throws(
      () => parseCertifyEvidence('{'),
      (e: unknown) => isEdgeguardError(e, 'EG_FORMAT'),
    );
  });

  test('property: any byte of any binary field flipped, or the field truncated, is refused with a typed error', () => {
    const fields = ['bindingPublic', 'akPublic', 'attest', 'signature'] as const;
    fc.assert(
      fc.property(
        fc.constantFrom(...fields),
        fc.nat(),
        fc.integer({ min: 1, max: 255 }),
        fc.boolean(),
        (field, i, x, truncate) => {
          const bytes = Buffer.from(evidence[field], 'base64');
          const at = i % bytes.length;
          let changed: Buffer;
          if (truncate) changed = bytes.subarray(0, at);
          else {
            changed = Buffer.from(bytes);
            changed[at]! ^= x;
          }
          const e2 = { ...evidence, [field]: changed.toString('base64') };
          assert.throws(
            () => verifyCertifyEvidence(e2, { bindingPem: fx.bindingPem! }),
            (e: unknown) => e instanceof EdgeguardError,
          );
        },
      ),
      { numRuns: 400 },
    );
  });
});
