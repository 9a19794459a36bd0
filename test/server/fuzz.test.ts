/**
 * Whatever arrives at the enrollment routes (the only ones open without a certificate), the
 * server answers with a 4xx and a typed error, never a 500 or a crash.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { startTestFleet, type TestFleet } from './fleet-helpers.ts';
import { createCsr, generateP256 } from '../../src/pki/index.ts';

describe('enrollment routes under random input', () => {
  let fleet: TestFleet;
  let validCsr: string;
  before(async () => {
    validCsr = await createCsr(await generateP256(), 'fuzz');
    fleet = await startTestFleet({
      policy: { allowSoftwareDevices: true, enrollRateLimit: { max: 1_000_000, timeWindowMs: 60_000 } },
    });
  });
  after(async () => fleet.stop());

  it('answers 4xx with an EG_* code for random JSON bodies and mutated valid-looking ones', async () => {
    const c = fleet.client();
    const b64 = fc.base64String({ minLength: 4, maxLength: 200 });
    const tpmLike = fc.record(
      {
        keyProvider: fc.constantFrom('tpm', 'software', 'TPM', ''),
        nonce: fc.oneof(fc.string({ maxLength: 50 }), fc.constant('A'.repeat(43))),
        ekCertificate: fc.option(b64, { nil: undefined }),
        ekPublic: b64,
        akPublic: b64,
        bindingPublic: b64,
        certifyInfo: b64,
        certifySignature: b64,
        csr: fc.oneof(
          fc.string({ maxLength: 100 }),
          fc.constant('-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n'),
          fc.constant(validCsr),
        ),
      },
      { requiredKeys: [] },
    );
    const finishLike = fc.record(
      { challengeId: fc.oneof(fc.string({ maxLength: 40 }), fc.constant('A'.repeat(32))), credential: b64 },
      { requiredKeys: [] },
    );
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('/v1/enroll/start', '/v1/enroll/finish'),
        fc.oneof(fc.jsonValue({ maxDepth: 3 }), tpmLike, finishLike),
        async (path, body) => {
          // A placeholder nonce becomes a real one, so that the request gets past the nonce check
          // into the CSR and TPM structure parsers.
          if (
            body !== null &&
            typeof body === 'object' &&
            !Array.isArray(body) &&
            (body as { nonce?: unknown }).nonce === 'A'.repeat(43)
          ) {
            (body as { nonce: string }).nonce = (
              await c.call<{ nonce: string }>('POST', '/v1/enroll/nonce')
            ).body.nonce;
          }
          const r = await c.send<{ error?: { code?: string } }>('POST', path, body);
          return (
            r.status >= 400 &&
            r.status < 500 &&
            typeof r.body.error?.code === 'string' &&
            r.body.error.code.startsWith('EG_')
          );
        },
      ),
      { numRuns: 150 },
    );
    // The server is still healthy afterwards.
    assert.equal((await c.send('GET', '/healthz')).status, 200);
  });
});
