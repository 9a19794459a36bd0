import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPairSync } from 'node:crypto';
import {
  FleetCa,
  crlPem,
  identityOf,
  renewalDue,
  generateP256,
  spkiOf,
  verifyCsr,
  createCsr,
  resolveCaPassphrase,
  x509,
} from '../../src/pki/index.ts';
import { isEdgeguardError } from '../../src/errors/index.ts';

const PASS = 'correct horse battery staple';

function openssl(args: string[], input?: string): string {
  return execFileSync('openssl', args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });
}

describe('fleet CA', () => {
  let dir: string;
  let ca: FleetCa;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'eg-pki-'));
    ca = await FleetCa.create(dir, PASS);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('keeps both CA keys encrypted on disk, readable by OpenSSL with the passphrase only', () => {
    const pki = join(dir, 'pki');
    for (const f of readdirSync(pki)) {
      assert.doesNotMatch(readFileSync(join(pki, f), 'utf8'), /BEGIN (EC )?PRIVATE KEY/, `${f} holds a plaintext key`);
    }
    for (const f of ['root-ca.key', 'issuing-ca.key']) {
      const p = join(pki, f);
      assert.match(readFileSync(p, 'utf8'), /^-----BEGIN ENCRYPTED PRIVATE KEY-----/);
      assert.equal(statSync(p).mode & 0o077, 0, `${f} is readable by others`);
      const text = openssl(['pkey', '-in', p, '-passin', `pass:${PASS}`, '-noout', '-text_pub']);
      assert.match(text, /prime256v1|P-256/);
      assert.throws(() => openssl(['pkey', '-in', p, '-passin', 'pass:wrong-passphrase', '-noout']));
    }
    // The PBES2 parameters are the ones we chose.
    const asn1 = openssl(['asn1parse', '-in', join(pki, 'root-ca.key')]);
    assert.match(asn1, /PBES2/);
    assert.match(asn1, /PBKDF2/);
    assert.match(asn1, /hmacWithSHA256/);
    assert.match(asn1, /aes-256-cbc/);
    assert.match(asn1, /INTEGER\s+:0927C0/, 'iteration count 600000');
  });

  it('refuses to load with a wrong passphrase and to create over an existing CA', async () => {
    await assert.rejects(FleetCa.load(dir, 'not the passphrase'), (e) => isEdgeguardError(e, 'EG_WRONG_KEY'));
    await assert.rejects(FleetCa.create(dir, PASS), (e) => isEdgeguardError(e, 'EG_EXISTS'));
    const again = await FleetCa.load(dir, PASS);
    assert.equal(again.root.serialNumber, ca.root.serialNumber);
  });

  it('refuses an issuing key that does not belong to the issuing certificate', async () => {
    const other = mkdtempSync(join(tmpdir(), 'eg-pki-'));
    try {
      await FleetCa.create(other, PASS);
      writeFileSync(join(other, 'pki', 'issuing-ca.key'), readFileSync(join(dir, 'pki', 'issuing-ca.key')));
      await assert.rejects(FleetCa.load(other, PASS), (e) => isEdgeguardError(e, 'EG_WRONG_KEY'));
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });

  it('issues device certificates that OpenSSL verifies against the fleet root, with the device profile', async () => {
    const keys = await generateP256();
    const issued = await ca.issueDeviceCertificate({
      deviceId: 'dev-0123456789abcdef',
      keyProvider: 'tpm',
      publicKey: await spkiOf(keys.publicKey),
    });
    const leaf = join(dir, 'leaf.pem');
    writeFileSync(leaf, issued.pem);
    writeFileSync(join(dir, 'chain.pem'), ca.issuingPem);
    const out = openssl([
      'verify',
      '-CAfile',
      join(dir, 'fleet-ca.pem'),
      '-untrusted',
      join(dir, 'chain.pem'),
      '-purpose',
      'sslclient',
      leaf,
    ]);
    assert.match(out, /OK/);
    const id = identityOf(issued.certificate);
    assert.equal(id.role, 'device');
    assert.equal(id.deviceId, 'dev-0123456789abcdef');
    assert.equal(id.keyProvider, 'tpm');
    assert.equal(id.serial, issued.serial);
    const lifeDays = (issued.notAfter.getTime() - issued.notBefore.getTime()) / 86400e3;
    assert.ok(lifeDays > 29.9 && lifeDays < 30.1, `device lifetime ${lifeDays} days`);
    assert.ok(issued.chainPem.startsWith(issued.pem) && issued.chainPem.endsWith(ca.issuingPem));
  });

  it('issues admin and server certificates with their roles, and refuses non-P-256 keys', async () => {
    const keys = await generateP256();
    const admin = await ca.issueAdminCertificate({ name: 'alice', publicKey: await spkiOf(keys.publicKey) });
    assert.equal(identityOf(admin.certificate).role, 'admin');
    assert.equal(identityOf(admin.certificate).name, 'alice');
    const server = await ca.issueServerCertificate({
      hostnames: ['localhost', '127.0.0.1'],
      publicKey: await spkiOf(keys.publicKey),
    });
    writeFileSync(join(dir, 'server.pem'), server.pem);
    const text = openssl(['x509', '-in', join(dir, 'server.pem'), '-noout', '-ext', 'subjectAltName,extendedKeyUsage']);
    assert.match(text, /DNS:localhost/);
    assert.match(text, /IP Address:127\.0\.0\.1/);
    assert.match(text, /TLS Web Server Authentication/);
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'der' });
    await assert.rejects(ca.issueAdminCertificate({ name: 'bob', publicKey: rsa }), (e) =>
      isEdgeguardError(e, 'EG_PKI'),
    );
    await assert.rejects(
      ca.issueDeviceCertificate({ deviceId: '../../etc', keyProvider: 'tpm', publicKey: await spkiOf(keys.publicKey) }),
      (e) => isEdgeguardError(e, 'EG_PKI'),
    );
    await assert.rejects(
      ca.issueAdminCertificate({ name: 'x, OU=device', publicKey: await spkiOf(keys.publicKey) }),
      (e) => isEdgeguardError(e, 'EG_USAGE'),
    );
  });

  it('refuses a certificate without a fleet role', async () => {
    const keys = await generateP256();
    const self = await x509.X509CertificateGenerator.createSelfSigned({
      name: 'CN=x, O=someone else',
      keys,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    });
    assert.throws(
      () => identityOf(self),
      (e) => isEdgeguardError(e, 'EG_FORBIDDEN'),
    );
  });

  it('publishes a CRL signed by the issuing CA that lists revoked serials', async () => {
    const keys = await generateP256();
    const issued = await ca.issueDeviceCertificate({
      deviceId: 'dev-00000000000000aa',
      keyProvider: 'software',
      publicKey: await spkiOf(keys.publicKey),
    });
    const crl = await ca.createCrl([{ serial: issued.serial, revokedAt: new Date(), reason: 'keyCompromise' }]);
    assert.ok(await crl.verify({ publicKey: ca.issuing.publicKey }));
    const crlPath = join(dir, 'crl.pem');
    writeFileSync(crlPath, crlPem(crl));
    const text = openssl(['crl', '-in', crlPath, '-noout', '-text']);
    assert.match(text.toLowerCase().replace(/:/g, ''), new RegExp(issued.serial));
    assert.match(text, /Key Compromise/);
    assert.match(text, /X509v3 CRL Number/);
    writeFileSync(join(dir, 'leaf2.pem'), issued.pem);
    writeFileSync(join(dir, 'bundle.pem'), ca.rootPem + ca.issuingPem);
    assert.throws(
      () =>
        openssl([
          'verify',
          '-crl_check',
          '-CAfile',
          join(dir, 'bundle.pem'),
          '-CRLfile',
          crlPath,
          join(dir, 'leaf2.pem'),
        ]),
      /revoked/,
    );
  });

  it('renews at two thirds of the lifetime', () => {
    const nb = new Date('2026-01-01T00:00:00Z');
    const na = new Date('2026-01-31T00:00:00Z');
    assert.equal(renewalDue(nb, na, new Date('2026-01-20T23:00:00Z')), false);
    assert.equal(renewalDue(nb, na, new Date('2026-01-21T00:00:01Z')), true);
  });
});

describe('certificate requests', () => {
  it('accepts a self-signed P-256 request and returns its key', async () => {
    const keys = await generateP256();
    const pem = await createCsr(keys, 'anything');
    const { spki } = await verifyCsr(pem);
    assert.deepEqual(spki, await spkiOf(keys.publicKey));
  });

  it('refuses garbage, oversized, tampered and RSA requests', async () => {
    await assert.rejects(verifyCsr('not a csr'), (e) => isEdgeguardError(e, 'EG_ENROLL'));
    await assert.rejects(verifyCsr('A'.repeat(9000)), (e) => isEdgeguardError(e, 'EG_ENROLL'));
    await assert.rejects(verifyCsr(42 as unknown as string), (e) => isEdgeguardError(e, 'EG_ENROLL'));
    const keys = await generateP256();
    const csr = new x509.Pkcs10CertificateRequest(await createCsr(keys, 'a'));
    const der = Buffer.from(csr.rawData);
    der[der.length - 5]! ^= 0x01; // inside the signature
    await assert.rejects(verifyCsr(x509.PemConverter.encode(der, 'CERTIFICATE REQUEST')), (e) =>
      isEdgeguardError(e, 'EG_ENROLL'),
    );
    const rsaKeys = (await globalThis.crypto.subtle.generateKey(
      { name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' },
      true,
      ['sign', 'verify'],
    )) as Parameters<typeof createCsr>[0];
    const rsaCsr = await x509.Pkcs10CertificateRequestGenerator.create({
      name: 'CN=r',
      keys: rsaKeys,
      signingAlgorithm: { name: 'RSASSA-PKCS1-v1_5' },
    });
    await assert.rejects(verifyCsr(rsaCsr.toString('pem')), (e) => isEdgeguardError(e, 'EG_ENROLL'));
  });
});

describe('CA passphrase', () => {
  it('comes from a file first, then the environment, and is required', () => {
    const d = mkdtempSync(join(tmpdir(), 'eg-pass-'));
    try {
      writeFileSync(join(d, 'p'), 'from-file-pass\nignored\n');
      assert.equal(
        resolveCaPassphrase({ file: join(d, 'p'), env: { EDGEGUARD_CA_PASSPHRASE: 'env' } }),
        'from-file-pass',
      );
      assert.equal(resolveCaPassphrase({ env: { EDGEGUARD_CA_PASSPHRASE: 'from-env-pass' } }), 'from-env-pass');
      assert.throws(
        () => resolveCaPassphrase({ env: {} }),
        (e) => isEdgeguardError(e, 'EG_CONFIG'),
      );
      writeFileSync(join(d, 'empty'), '');
      assert.throws(
        () => resolveCaPassphrase({ file: join(d, 'empty'), env: {} }),
        (e) => isEdgeguardError(e, 'EG_CONFIG'),
      );
      assert.throws(
        () => resolveCaPassphrase({ file: join(d, 'missing'), env: {} }),
        (e) => isEdgeguardError(e, 'EG_NOT_FOUND'),
      );
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});
