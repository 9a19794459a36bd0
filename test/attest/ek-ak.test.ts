import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { webcrypto } from 'node:crypto';
import fc from 'fast-check';
import {
  checkAttestationKey,
  checkResidentKey,
  ekPublicKeyHash,
  loadEkTrustStore,
  verifyEkCertificate,
  type EkTrustStore,
} from '../../src/attest/index.ts';
import { x509 } from '../../src/pki/index.ts';
import { isEdgeguardError } from '../../src/errors/index.ts';
import { AK_ATTRS, ATTR, EK_ATTRS, rsaPublic } from './tpm-public-builder.ts';

const RSA = {
  name: 'RSASSA-PKCS1-v1_5',
  hash: 'SHA-256',
  publicExponent: new Uint8Array([1, 0, 1]),
  modulusLength: 2048,
};
const DAY = 86400e3;
type Keys = Awaited<ReturnType<typeof gen>>;
const gen = async () =>
  (await webcrypto.subtle.generateKey(RSA, true, ['sign', 'verify'])) as unknown as Parameters<
    typeof x509.X509CertificateGenerator.createSelfSigned
  >[0]['keys'];

async function caCert(
  name: string,
  keys: Keys,
  issuer: { name: string; keys: Keys } | null,
  o: { ca?: boolean; notBefore?: Date; notAfter?: Date } = {},
) {
  return x509.X509CertificateGenerator.create({
    subject: name,
    issuer: issuer?.name ?? name,
    publicKey: keys.publicKey,
    signingKey: (issuer?.keys ?? keys).privateKey,
    signingAlgorithm: RSA,
    notBefore: o.notBefore ?? new Date(Date.now() - DAY),
    notAfter: o.notAfter ?? new Date(Date.now() + 3650 * DAY),
    extensions: [new x509.BasicConstraintsExtension(o.ca ?? true, undefined, true)],
  });
}

describe('EK certificate chains', () => {
  let root: x509.X509Certificate;
  let inter: x509.X509Certificate;
  let rootKeys: Keys;
  let interKeys: Keys;
  let ek: ReturnType<typeof rsaPublic>;
  let ekCert: x509.X509Certificate;
  let trustRoot: EkTrustStore;

  before(async () => {
    rootKeys = await gen();
    interKeys = await gen();
    root = await caCert('CN=Vendor Root', rootKeys, null);
    inter = await caCert('CN=Vendor EK CA', interKeys, { name: 'CN=Vendor Root', keys: rootKeys });
    ek = rsaPublic({ attributes: EK_ATTRS });
    ekCert = await x509.X509CertificateGenerator.create({
      subject: '',
      issuer: 'CN=Vendor EK CA',
      publicKey: await x509.PublicKey.create(ek.publicKey.export({ type: 'spki', format: 'der' })),
      signingKey: interKeys.privateKey,
      signingAlgorithm: RSA,
      notBefore: new Date(Date.now() - DAY),
      notAfter: new Date('9999-12-31T23:59:59Z'),
      extensions: [new x509.BasicConstraintsExtension(false, undefined, true)],
    });
    trustRoot = { anchors: [root], source: 'test-roots' };
  });

  it('accepts a chain through an intermediate the device sends, or one in the trust store', async () => {
    const v = await verifyEkCertificate(Buffer.from(ekCert.rawData), ek.pub, trustRoot, {
      intermediates: [Buffer.from(inter.rawData)],
    });
    assert.equal(v.chain.length, 3);
    const v2 = await verifyEkCertificate(Buffer.from(ekCert.rawData), ek.pub, {
      anchors: [root, inter],
      source: 'both',
    });
    assert.equal(v2.chain.length, 2, 'an anchored intermediate ends the chain');
  });

  it('loads a trust store directory (PEM bundles and DER) and ignores other files', () => {
    const dir = mkdtempSync(join(tmpdir(), 'eg-ekroots-'));
    try {
      writeFileSync(join(dir, 'bundle.pem'), root.toString('pem') + '\n' + inter.toString('pem') + '\n');
      writeFileSync(join(dir, 'root.der'), Buffer.from(root.rawData));
      writeFileSync(join(dir, 'README.txt'), 'not a cert');
      assert.equal(loadEkTrustStore(dir).anchors.length, 3);
      assert.equal(loadEkTrustStore(join(dir, 'missing')).anchors.length, 0);
      // A file far past what a certificate bundle can be is refused before it is read.
      writeFileSync(join(dir, 'huge.pem'), '');
      truncateSync(join(dir, 'huge.pem'), 1024 * 1024 * 1024);
      assert.throws(
        () => loadEkTrustStore(dir),
        (e) => isEdgeguardError(e, 'EG_FILE_TOO_LARGE') && e.message.includes('huge.pem'),
      );
      rmSync(join(dir, 'huge.pem'));
      writeFileSync(join(dir, 'broken.crt'), 'garbage');
      assert.throws(
        () => loadEkTrustStore(dir),
        (e) => isEdgeguardError(e, 'EG_CONFIG'),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses an untrusted chain, a missing intermediate, an empty trust store', async () => {
    const otherKeys = await gen();
    const other = await caCert('CN=Vendor Root', otherKeys, null); // same name, other key
    await assert.rejects(
      verifyEkCertificate(
        Buffer.from(ekCert.rawData),
        ek.pub,
        { anchors: [other], source: 'x' },
        { intermediates: [Buffer.from(inter.rawData)] },
      ),
      /does not chain/,
    );
    await assert.rejects(verifyEkCertificate(Buffer.from(ekCert.rawData), ek.pub, trustRoot), /does not chain/);
    await assert.rejects(
      verifyEkCertificate(Buffer.from(ekCert.rawData), ek.pub, { anchors: [], source: 'empty-dir' }),
      /empty-dir is empty/,
    );
  });

  it('refuses a device-supplied "intermediate" that is not a CA, and an expired issuer', async () => {
    const notCa = await caCert('CN=Vendor EK CA', interKeys, { name: 'CN=Vendor Root', keys: rootKeys }, { ca: false });
    await assert.rejects(
      verifyEkCertificate(Buffer.from(ekCert.rawData), ek.pub, trustRoot, {
        intermediates: [Buffer.from(notCa.rawData)],
      }),
      /does not chain/,
    );
    const expired = await caCert(
      'CN=Vendor EK CA',
      interKeys,
      { name: 'CN=Vendor Root', keys: rootKeys },
      { notBefore: new Date(Date.now() - 10 * DAY), notAfter: new Date(Date.now() - DAY) },
    );
    await assert.rejects(
      verifyEkCertificate(Buffer.from(ekCert.rawData), ek.pub, trustRoot, {
        intermediates: [Buffer.from(expired.rawData)],
      }),
      /does not chain/,
    );
  });

  it('refuses a certificate for another key and a certificate not valid now', async () => {
    const otherEk = rsaPublic({ attributes: EK_ATTRS });
    await assert.rejects(
      verifyEkCertificate(Buffer.from(ekCert.rawData), otherEk.pub, trustRoot, {
        intermediates: [Buffer.from(inter.rawData)],
      }),
      /for another key/,
    );
    await assert.rejects(
      verifyEkCertificate(Buffer.from(ekCert.rawData), ek.pub, trustRoot, {
        intermediates: [Buffer.from(inter.rawData)],
        now: new Date(Date.now() - 5 * DAY),
      }),
      /not valid now/,
    );
  });

  it('never crashes on random or truncated DER (EG_ENROLL only)', async () => {
    const der = Buffer.from(ekCert.rawData);
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ maxLength: 300 }),
          fc.integer({ min: 0, max: der.length - 1 }).map((n) => der.subarray(0, n)),
        ),
        async (bytes) => {
          try {
            await verifyEkCertificate(bytes, ek.pub, trustRoot);
            return false;
          } catch (e) {
            return isEdgeguardError(e, 'EG_ENROLL');
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('hashes the EK SubjectPublicKeyInfo', () => {
    const h = ekPublicKeyHash(ek.pub);
    assert.match(h, /^[0-9a-f]{64}$/);
    assert.equal(h, ekPublicKeyHash(rsaPublic({ attributes: EK_ATTRS, key: ek.publicKey }).pub));
  });
});

describe('attestation key policy', () => {
  it('accepts a restricted, TPM-resident RSA-2048 signing key', () => {
    checkAttestationKey(rsaPublic({ attributes: AK_ATTRS, sign: true }).pub);
  });

  for (const missing of ['restricted', 'sign', 'fixedTPM', 'fixedParent', 'sensitiveDataOrigin'] as const) {
    it(`refuses an AK without ${missing}`, () => {
      const ak = rsaPublic({ attributes: AK_ATTRS & ~ATTR[missing], sign: true }).pub;
      assert.throws(
        () => checkAttestationKey(ak),
        (e) => isEdgeguardError(e, 'EG_ENROLL') && e.message.includes(`lacks ${missing}`),
      );
    });
  }

  it('refuses an AK that also decrypts, a 1024-bit AK and a SHA-1 name', () => {
    assert.throws(
      () => checkAttestationKey(rsaPublic({ attributes: AK_ATTRS | ATTR.decrypt, sign: true }).pub),
      /also a decryption key/,
    );
    assert.throws(
      () => checkAttestationKey(rsaPublic({ attributes: AK_ATTRS, sign: true, bits: 1024 }).pub),
      /RSA-1024/,
    );
    assert.throws(
      () => checkAttestationKey(rsaPublic({ attributes: AK_ATTRS, sign: true, nameAlg: 0x0004 }).pub),
      /SHA-256 or stronger/,
    );
  });

  it('refuses a binding key that could have been imported or duplicated', () => {
    const ok = ATTR.fixedTPM | ATTR.fixedParent | ATTR.sensitiveDataOrigin | ATTR.decrypt;
    checkResidentKey(rsaPublic({ attributes: ok }).pub);
    assert.throws(
      () => checkResidentKey(rsaPublic({ attributes: ok & ~ATTR.sensitiveDataOrigin }).pub),
      /lacks sensitiveDataOrigin/,
    );
    assert.throws(() => checkResidentKey(rsaPublic({ attributes: ok & ~ATTR.fixedTPM }).pub), /lacks fixedTPM/);
  });
});
