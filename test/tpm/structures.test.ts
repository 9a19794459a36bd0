/**
 * TCG structures in pure TypeScript: recorded swtpm fixtures (fixtures/swtpm-recorded.json, made
 * with tpm2-tools against swtpm), synthetic structures signed by Node keys, bad input and
 * fast-check properties (truncated, mutated or random bytes give EG_TPM_STRUCTURE, never a crash).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  createPublicKey,
  generateKeyPairSync,
  sign as nodeSign,
  constants,
  createHash,
  type KeyObject,
} from 'node:crypto';
import fc from 'fast-check';
import { EdgeguardError, isEdgeguardError } from '../../src/errors/index.ts';
import {
  TPM_ALG,
  TpmWriter,
  parseTpm2bPublic,
  parseTpmtPublic,
  tpmPublicKey,
  objectName,
  hasAttributes,
  parseTpmsAttest,
  parseTpmtSignature,
  verifyTpmSignature,
  verifyCertify,
  verifyQuote,
  verifyAttestation,
  parsePcrSelection,
  formatPcrSelection,
  marshalPcrSelection,
  policyPcrDigest,
  decodeResponseCode,
  type PcrValues,
} from '../../src/tpm/index.ts';
import { tpmErrorFor } from '../../src/tpm/response-code.ts';

const fx = JSON.parse(readFileSync(new URL('./fixtures/swtpm-recorded.json', import.meta.url), 'utf8')) as Record<
  string,
  unknown
>;
const h = (k: string) => Buffer.from(fx[k] as string, 'hex');
const pcrValues = (k: string): PcrValues => ({
  sha256: Object.fromEntries(
    Object.entries(fx[k] as Record<string, string>).map(([i, v]) => [Number(i), Buffer.from(v, 'hex')]),
  ),
});

function spkiPem(k: KeyObject): string {
  return k.export({ type: 'spki', format: 'pem' }).toString();
}

function assertStructureError(fn: () => unknown): void {
  assert.throws(fn, (e: unknown) => isEdgeguardError(e, 'EG_TPM_STRUCTURE'));
}

/** Only typed errors may escape a parser or verifier of outside bytes. */
function onlyTypedErrors(fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof EdgeguardError)) throw e;
  }
}

describe('TPM2B_PUBLIC (recorded from swtpm)', () => {
  test('binding key: attributes, scheme, and the same public key as tpm2_readpublic -f pem', () => {
    const pub = parseTpm2bPublic(h('bindingPublic'));
    assert.equal(pub.params.type, 'rsa');
    assert.ok(hasAttributes(pub, 'fixedTPM', 'fixedParent', 'sensitiveDataOrigin', 'decrypt'));
    assert.ok(!hasAttributes(pub, 'userWithAuth'), 'the binding key must need its policy for every use');
    assert.ok(!hasAttributes(pub, 'sign'));
    if (pub.params.type === 'rsa') {
      assert.equal(pub.params.keyBits, 2048);
      assert.equal(pub.params.scheme.scheme, TPM_ALG.OAEP);
      assert.equal(pub.params.scheme.hashAlg, TPM_ALG.SHA256);
    }
    assert.equal(spkiPem(tpmPublicKey(pub)), spkiPem(createPublicKey(fx.bindingPem as string)));
    assert.equal(objectName(pub).toString('hex'), fx.bindingName);
  });

  test('ECC P-256 key equals tpm2_readpublic -f pem', () => {
    const pub = parseTpm2bPublic(h('eccPublic'));
    assert.equal(pub.params.type, 'ecc');
    assert.equal(spkiPem(tpmPublicKey(pub)), spkiPem(createPublicKey(fx.eccPem as string)));
    assert.equal(objectName(pub).toString('hex'), fx.eccName);
  });

  test('AK: a restricted signing key whose name matches tpm2_createak -n', () => {
    const ak = parseTpm2bPublic(h('akPublic'));
    assert.ok(hasAttributes(ak, 'fixedTPM', 'fixedParent', 'sensitiveDataOrigin', 'restricted', 'sign'));
    assert.equal(objectName(ak).toString('hex'), fx.akName);
  });

  test('EK parses as a restricted decryption key', () => {
    const ek = parseTpm2bPublic(h('ekPublic'));
    assert.ok(hasAttributes(ek, 'fixedTPM', 'fixedParent', 'restricted', 'decrypt'));
    assert.equal(tpmPublicKey(ek).asymmetricKeyType, 'rsa');
  });

  test('the authPolicy equals PolicyPCR computed in TypeScript from the recorded PCR values', () => {
    const pub = parseTpm2bPublic(h('bindingPublic'));
    const digest = policyPcrDigest(
      parsePcrSelection('sha256:0,1,2,3,4,5,7'),
      pcrValues('bindingPcrValues'),
      TPM_ALG.SHA256,
    );
    assert.equal(digest.toString('hex'), fx.bindingPolicy);
    assert.ok(digest.equals(pub.authPolicy));
    // A different PCR 7 gives a different policy.
    const other = pcrValues('bindingPcrValues');
    other.sha256![7] = Buffer.alloc(32);
    assert.ok(!policyPcrDigest(parsePcrSelection('sha256:0,1,2,3,4,5,7'), other, TPM_ALG.SHA256).equals(digest));
  });

  test('TPM2B size that disagrees with the content, trailing bytes and truncation are typed errors', () => {
    const good = h('bindingPublic');
    assertStructureError(() => parseTpm2bPublic(Buffer.concat([good, Buffer.from([0])])));
    const inner = good.subarray(2);
    assertStructureError(() => parseTpmtPublic(Buffer.concat([inner, Buffer.from([1])])));
    for (let n = 0; n < good.length; n++) assertStructureError(() => parseTpm2bPublic(good.subarray(0, n)));
    const badType = Buffer.from(good);
    badType.writeUInt16BE(0x7777, 2);
    assertStructureError(() => parseTpm2bPublic(badType));
  });
});

describe('TPMS_ATTEST and TPMT_SIGNATURE (recorded from swtpm)', () => {
  const ak = parseTpm2bPublic(h('akPublic'));
  const binding = parseTpm2bPublic(h('bindingPublic'));

  test('TPM2_Certify evidence verifies and names the binding key', () => {
    const v = verifyCertify(ak, binding, h('certifyAttest'), h('certifySignature'));
    assert.equal(v.attest.attested.kind, 'certify');
    if (v.attest.attested.kind === 'certify') assert.equal(v.attest.attested.name.toString('hex'), fx.bindingName);
    assert.ok(v.attest.clockInfo.safe);
    assert.equal(v.signature.sigAlg, TPM_ALG.RSASSA);
  });

  test('certify: any flipped byte of the attestation or signature is refused', () => {
    const att = h('certifyAttest');
    const sig = h('certifySignature');
    for (const i of [0, 6, 20, att.length - 1]) {
      const bad = Buffer.from(att);
      bad[i]! ^= 0x01;
      assert.throws(
        () => verifyCertify(ak, binding, bad, sig),
        (e: unknown) => e instanceof EdgeguardError,
      );
    }
    const badSig = Buffer.from(sig);
    badSig[badSig.length - 1]! ^= 0x80;
    assert.throws(
      () => verifyCertify(ak, binding, att, badSig),
      (e: unknown) => isEdgeguardError(e, 'EG_SIGNATURE_INVALID'),
    );
  });

  test('certify: a different key presented with the evidence is refused (name mismatch)', () => {
    const other = parseTpm2bPublic(h('eccPublic'));
    assert.throws(
      () => verifyCertify(ak, other, h('certifyAttest'), h('certifySignature')),
      /certified object name does not match/,
    );
  });

  test('certify: a non-restricted key cannot act as an AK', () => {
    const ecc = parseTpm2bPublic(h('eccPublic'));
    assert.throws(
      () => verifyAttestation(ecc, h('certifyAttest'), h('certifySignature')),
      /not a TPM-resident restricted signing key/,
    );
  });

  test('quote verifies against the nonce and the PCR values over the SIGNED selection', () => {
    const v = verifyQuote(ak, h('quoteAttest'), h('quoteSignature'), h('quoteNonce'), pcrValues('quotePcrValues'));
    assert.equal(formatPcrSelection(v.pcrSelect), 'sha256:0,1,2,3,7');
    assert.throws(
      () => verifyQuote(ak, h('quoteAttest'), h('quoteSignature'), Buffer.alloc(20), pcrValues('quotePcrValues')),
      /expected nonce/,
    );
    const moved = pcrValues('quotePcrValues');
    moved.sha256![0] = Buffer.alloc(32, 1);
    assert.throws(
      () => verifyQuote(ak, h('quoteAttest'), h('quoteSignature'), h('quoteNonce'), moved),
      /PCR digest does not match/,
    );
  });

  test('bad magic, unknown type, truncation and trailing bytes are typed errors', () => {
    const att = h('certifyAttest');
    const m = Buffer.from(att);
    m[0] = 0;
    assertStructureError(() => parseTpmsAttest(m));
    const t = Buffer.from(att);
    t.writeUInt16BE(0x8016, 4);
    assertStructureError(() => parseTpmsAttest(t));
    for (let n = 0; n < att.length; n++) assertStructureError(() => parseTpmsAttest(att.subarray(0, n)));
    assertStructureError(() => parseTpmsAttest(Buffer.concat([att, Buffer.from([0])])));
    const sig = h('certifySignature');
    for (let n = 0; n < sig.length; n += 7) assertStructureError(() => parseTpmtSignature(sig.subarray(0, n)));
    assertStructureError(() => parseTpmtSignature(Buffer.concat([sig, Buffer.from([0])])));
    assertStructureError(() => parseTpmtSignature(Buffer.from([0x00, 0x05, 0x00, 0x0b])));
  });
});

// ---- synthetic structures built here and signed with Node keys -------------------------------

function tpmtPublicFor(key: KeyObject, attrs: number, sigScheme: number): Buffer {
  const jwk = key.export({ format: 'jwk' });
  const w = new TpmWriter();
  if (jwk.kty === 'RSA') {
    const n = Buffer.from(jwk.n!, 'base64url');
    w.u16(TPM_ALG.RSA).u16(TPM_ALG.SHA256).u32(attrs).tpm2b(Buffer.alloc(0));
    w.u16(TPM_ALG.NULL)
      .u16(sigScheme)
      .u16(TPM_ALG.SHA256)
      .u16(n.length * 8)
      .u32(0)
      .tpm2b(n);
  } else {
    w.u16(TPM_ALG.ECC).u16(TPM_ALG.SHA256).u32(attrs).tpm2b(Buffer.alloc(0));
    w.u16(TPM_ALG.NULL).u16(TPM_ALG.ECDSA).u16(TPM_ALG.SHA256).u16(0x0003).u16(TPM_ALG.NULL);
    w.tpm2b(Buffer.from(jwk.x!, 'base64url')).tpm2b(Buffer.from(jwk.y!, 'base64url'));
  }
  return w.toBuffer();
}

function certifyAttest(name: Buffer, extra: Buffer): Buffer {
  return new TpmWriter()
    .u32(0xff544347)
    .u16(0x8017)
    .tpm2b(Buffer.concat([Buffer.from([0, 0x0b]), Buffer.alloc(32, 9)]))
    .tpm2b(extra)
    .u32(0)
    .u32(1234)
    .u32(1)
    .u32(0)
    .u8(1)
    .u32(0)
    .u32(7)
    .tpm2b(name)
    .tpm2b(name)
    .toBuffer();
}

const AK_ATTRS = (1 << 1) | (1 << 4) | (1 << 5) | (1 << 16) | (1 << 18);

describe('synthetic structures signed with Node keys', () => {
  const cases = [
    { label: 'RSASSA', kp: generateKeyPairSync('rsa', { modulusLength: 2048 }), scheme: TPM_ALG.RSASSA },
    { label: 'RSAPSS', kp: generateKeyPairSync('rsa', { modulusLength: 2048 }), scheme: TPM_ALG.RSAPSS },
    { label: 'ECDSA P-256', kp: generateKeyPairSync('ec', { namedCurve: 'P-256' }), scheme: TPM_ALG.ECDSA },
  ];
  for (const { label, kp, scheme } of cases) {
    test(`${label}: TPMT_PUBLIC round trip, name, and certify verification`, () => {
      const tpmt = tpmtPublicFor(kp.publicKey, AK_ATTRS, scheme);
      const ak = parseTpmtPublic(tpmt);
      assert.equal(spkiPem(tpmPublicKey(ak)), spkiPem(kp.publicKey));
      assert.deepEqual(
        objectName(ak),
        Buffer.concat([Buffer.from([0, 0x0b]), createHash('sha256').update(tpmt).digest()]),
      );
      const attest = certifyAttest(objectName(ak), Buffer.from('nonce'));
      let sigBytes: Buffer;
      if (scheme === TPM_ALG.ECDSA) {
        const rs = nodeSign('sha256', attest, { key: kp.privateKey, dsaEncoding: 'ieee-p1363' });
        sigBytes = new TpmWriter()
          .u16(TPM_ALG.ECDSA)
          .u16(TPM_ALG.SHA256)
          .tpm2b(rs.subarray(0, 32))
          .tpm2b(rs.subarray(32))
          .toBuffer();
      } else {
        const padding = scheme === TPM_ALG.RSAPSS ? constants.RSA_PKCS1_PSS_PADDING : constants.RSA_PKCS1_PADDING;
        const s = nodeSign('sha256', attest, { key: kp.privateKey, padding, saltLength: 32 });
        sigBytes = new TpmWriter().u16(scheme).u16(TPM_ALG.SHA256).tpm2b(s).toBuffer();
      }
      const sig = parseTpmtSignature(sigBytes);
      assert.ok(verifyTpmSignature(ak, attest, sig));
      const tampered = Buffer.from(attest);
      tampered[tampered.length - 1]! ^= 1;
      assert.ok(!verifyTpmSignature(ak, tampered, sig));
      verifyCertify(ak, ak, attest, sigBytes, { extraData: Buffer.from('nonce') });
    });
  }

  test('an EC point off the curve is a typed error', () => {
    const w = new TpmWriter().u16(TPM_ALG.ECC).u16(TPM_ALG.SHA256).u32(AK_ATTRS).tpm2b(Buffer.alloc(0));
    w.u16(TPM_ALG.NULL)
      .u16(TPM_ALG.ECDSA)
      .u16(TPM_ALG.SHA256)
      .u16(0x0003)
      .u16(TPM_ALG.NULL)
      .tpm2b(Buffer.alloc(32, 1))
      .tpm2b(Buffer.alloc(32, 2));
    assertStructureError(() => tpmPublicKey(parseTpmtPublic(w.toBuffer())));
  });
});

describe('PCR selections', () => {
  test('text form round trip and TPML_PCR_SELECTION bitmap', () => {
    const sel = parsePcrSelection('sha256:7,0,1,2,3,4,5');
    assert.equal(formatPcrSelection(sel), 'sha256:0,1,2,3,4,5,7');
    assert.equal(marshalPcrSelection(sel).toString('hex'), '00000001' + '000b' + '03' + 'bf0000');
    assert.equal(formatPcrSelection(parsePcrSelection('sha1:16+sha256:23')), 'sha1:16+sha256:23');
  });
  test('bad selections are usage errors', () => {
    for (const bad of ['', 'sha256', 'sha256:', 'md5:1', 'sha256:24', 'sha256:1+sha256:2', 'sha256:1;2']) {
      assert.throws(
        () => parsePcrSelection(bad),
        (e: unknown) => isEdgeguardError(e, 'EG_USAGE'),
        bad,
      );
    }
  });
});

describe('response codes', () => {
  test('decoding of the codes edgeguard acts on', () => {
    assert.equal(decodeResponseCode(0x99d).name, 'TPM_RC_POLICY_FAIL');
    assert.equal(decodeResponseCode(0x99d).where, 'session 1');
    assert.equal(decodeResponseCode(0x1df).name, 'TPM_RC_INTEGRITY');
    assert.equal(decodeResponseCode(0x1df).where, 'parameter 1');
    assert.ok(decodeResponseCode(0x902).resources);
    assert.ok(decodeResponseCode(0x922).retryable);
    assert.ok(decodeResponseCode(0x128).retryable);
    assert.equal(decodeResponseCode(0x921).name, 'TPM_RC_LOCKOUT');
    assert.equal(decodeResponseCode(0xa000a).layer, 10);
  });

  test("ESAPI's RSP_AUTH_FAILED (a response HMAC that does not verify) is named, and is EG_TAMPERED", () => {
    const d = decodeResponseCode(0x7001b);
    assert.equal(d.layer, 7);
    assert.equal(d.name, 'TSS2_ESYS_RC_RSP_AUTH_FAILED');
    assert.equal(decodeResponseCode(0x70007).name, 'TSS layer 7 error 0x7');
    const e = tpmErrorFor(d, 'read the NV counter', 'tpm2_nvread');
    assert.ok(isEdgeguardError(e, 'EG_TAMPERED'));
    assert.match(e.message, /read the NV counter failed its integrity check/);
  });
});

describe('property tests: outside bytes never crash a parser', () => {
  const parsers: Array<[string, (b: Uint8Array) => unknown]> = [
    ['parseTpm2bPublic', parseTpm2bPublic],
    ['parseTpmtPublic', (b) => tpmPublicKey(parseTpmtPublic(b))],
    ['parseTpmsAttest', parseTpmsAttest],
    ['parseTpmtSignature', parseTpmtSignature],
  ];
  for (const [name, parse] of parsers) {
    test(`${name}: random bytes give a result or EG_TPM_STRUCTURE`, () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 400 }), (bytes) => {
          try {
            parse(bytes);
          } catch (e) {
            assert.ok(isEdgeguardError(e, 'EG_TPM_STRUCTURE'), `${name} threw ${String(e)}`);
          }
        }),
        { numRuns: 500 },
      );
    });
  }

  const recorded: Array<[string, (b: Uint8Array) => unknown]> = [
    ['bindingPublic', (b) => tpmPublicKey(parseTpm2bPublic(b))],
    ['eccPublic', (b) => tpmPublicKey(parseTpm2bPublic(b))],
    ['certifyAttest', parseTpmsAttest],
    ['quoteAttest', parseTpmsAttest],
    ['quoteSignature', parseTpmtSignature],
  ];
  for (const [key, parse] of recorded) {
    test(`${key}: truncated or mutated recordings give a result or EG_TPM_STRUCTURE`, () => {
      const good = h(key);
      fc.assert(
        fc.property(
          fc.nat({ max: good.length - 1 }),
          fc.integer({ min: 1, max: 255 }),
          fc.nat({ max: good.length }),
          (i, x, cut) => {
            const mutated = Buffer.from(good);
            mutated[i]! ^= x;
            for (const b of [mutated, good.subarray(0, cut)]) {
              try {
                parse(b);
              } catch (e) {
                assert.ok(isEdgeguardError(e, 'EG_TPM_STRUCTURE'), `${key} threw ${String(e)}`);
              }
            }
          },
        ),
        { numRuns: 400 },
      );
    });
  }

  test('verifyCertify on mutated evidence only ever throws typed errors', () => {
    const ak = parseTpm2bPublic(h('akPublic'));
    const binding = parseTpm2bPublic(h('bindingPublic'));
    const att = h('certifyAttest');
    const sig = h('certifySignature');
    fc.assert(
      fc.property(fc.boolean(), fc.nat({ max: 400 }), fc.integer({ min: 1, max: 255 }), (inSig, i, x) => {
        const a = Buffer.from(att);
        const s = Buffer.from(sig);
        const target = inSig ? s : a;
        target[i % target.length]! ^= x;
        assert.throws(
          () => verifyCertify(ak, binding, a, s),
          (e: unknown) => e instanceof EdgeguardError,
        );
      }),
      { numRuns: 300 },
    );
    onlyTypedErrors(() => verifyCertify(ak, binding, att, sig));
  });
});
