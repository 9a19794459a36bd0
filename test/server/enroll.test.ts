/**
 * Enrollment refused, each for its own reason, with evidence from a real (software) TPM that is
 * altered one piece at a time.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEVICE_FILES, initDevice, parseCertifyEvidence } from '../../src/keystore/index.ts';
import { TpmClient, BINDING_KEY_ATTRIBUTES, parseTpm2bPublic, type TpmKeyBlobs } from '../../src/tpm/index.ts';
import { protocol, ekPublicKeyHash } from '../../src/attest/index.ts';
import { FleetCa, createCsr, generateP256, x509 } from '../../src/pki/index.ts';
import type { FleetClient } from '../../src/fleet/index.ts';
import { startTestTpm, stopTestTpm, TPM_SKIP, type Swtpm } from '../helpers/swtpm.ts';
import { startTestFleet, type TestFleet } from './fleet-helpers.ts';

type ErrBody = { error: { code: string; message: string } };

describe('enrollment refusals (swtpm evidence)', { skip: TPM_SKIP }, () => {
  let tpm: Swtpm;
  let fleet: TestFleet;
  let untrusting: TestFleet;
  let work: string;
  let evidence: ReturnType<typeof parseCertifyEvidence>;
  let ak: TpmKeyBlobs;
  let tpmClient: TpmClient;

  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'eg-enroll-refusals-'));
    tpm = await startTestTpm();
    tpmClient = new TpmClient({ tcti: tpm.tcti });
    const deviceDir = join(work, 'device');
    await initDevice({ dir: deviceDir, tcti: tpm.tcti });
    evidence = parseCertifyEvidence(readFileSync(join(deviceDir, DEVICE_FILES.certify), 'utf8'));
    ak = {
      public: readFileSync(join(deviceDir, DEVICE_FILES.akTpmPublic)),
      private: readFileSync(join(deviceDir, DEVICE_FILES.akTpmPrivate)),
    };
    const trusting = join(work, 'trusting');
    mkdirSync(join(trusting, 'ek-roots'), { recursive: true });
    copyFileSync(tpm.ca.rootCertPath, join(trusting, 'ek-roots', 'root.pem'));
    copyFileSync(tpm.ca.issuerCertPath, join(trusting, 'ek-roots', 'issuer.pem'));
    fleet = await startTestFleet({ dataDir: trusting });
    // A server whose EK trust store holds some other manufacturer's CA.
    const other = join(work, 'untrusting');
    mkdirSync(join(other, 'ek-roots'), { recursive: true });
    const otherCa = await FleetCa.create(join(work, 'other-vendor'), 'other-vendor-pass');
    copyFileSync(join(work, 'other-vendor', 'fleet-ca.pem'), join(other, 'ek-roots', 'vendor.pem'));
    untrusting = await startTestFleet({ dataDir: other });
    assert.ok(otherCa);
  });
  after(async () => {
    await fleet?.stop();
    await untrusting?.stop();
    await stopTestTpm(tpm);
    rmSync(work, { recursive: true, force: true });
  });

  async function startBody(
    c: FleetClient,
    over: Partial<protocol.TpmEnrollStart> = {},
  ): Promise<protocol.TpmEnrollStart> {
    const nonce = (await c.call<protocol.NonceResponse>('POST', '/v1/enroll/nonce')).body.nonce;
    return {
      keyProvider: 'tpm',
      nonce,
      ekCertificate: evidence.ekCertificate!,
      ekPublic: evidence.ekPublic,
      akPublic: evidence.akPublic,
      bindingPublic: evidence.bindingPublic,
      certifyInfo: evidence.attest,
      certifySignature: evidence.signature,
      csr: await createCsr(await generateP256(), 'x'),
      ...over,
    };
  }

  async function refusedAt(
    c: FleetClient,
    body: protocol.TpmEnrollStart,
    status: number,
    message: RegExp,
  ): Promise<void> {
    const r = await c.send<ErrBody>('POST', '/v1/enroll/start', body);
    assert.equal(r.status, status, JSON.stringify(r.body));
    assert.match(r.body.error.message, message);
  }

  it('refuses an EK certificate from an untrusted CA', async () => {
    const c = untrusting.client();
    await refusedAt(c, await startBody(c), 403, /does not chain to a CA/);
  });

  it('refuses an EK certificate that is for another key, and a missing certificate for an unregistered EK', async () => {
    const c = fleet.client();
    const otherEk = (await tpmClient.attestation.createEndorsementKeys()).ekPublic; // same TPM, same EK template: equal
    assert.deepEqual(otherEk, Buffer.from(evidence.ekPublic, 'base64'));
    // A certificate for the EK, presented with another RSA storage key's public area.
    const fakeEk = await tpmClient.createKey(
      'rsa2048:null:aes128cfb',
      'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|decrypt',
    );
    await refusedAt(
      c,
      await startBody(c, { ekPublic: fakeEk.public.toString('base64') }),
      403,
      /EK certificate is for another key/,
    );
    const { ekCertificate: _drop, ...noCert } = await startBody(c);
    await refusedAt(c, noCert as protocol.TpmEnrollStart, 403, /no EK certificate was sent/);
  });

  it('refuses an AK that is not restricted', async () => {
    const c = fleet.client();
    // A real TPM signing key without the restricted attribute: it could sign anything, so its
    // "attestations" prove nothing.
    const loose = await tpmClient.createKey(
      'rsa2048:rsassa-sha256:null',
      'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign',
    );
    await refusedAt(c, await startBody(c, { akPublic: loose.public.toString('base64') }), 403, /lacks restricted/);
  });

  it('refuses a binding key the AK did not certify', async () => {
    const c = fleet.client();
    // Another TPM-resident key with the binding key's attributes, presented with the evidence made for the real one.
    const other = await tpmClient.createKey('rsa2048:oaep-sha256:null', BINDING_KEY_ATTRIBUTES);
    await refusedAt(
      c,
      await startBody(c, { bindingPublic: other.public.toString('base64') }),
      403,
      /not certified by the attestation key.*name does not match/,
    );
    // The right key, with a forged signature.
    const sig = Buffer.from(evidence.signature, 'base64');
    sig[sig.length - 1]! ^= 0x01;
    await refusedAt(
      c,
      await startBody(c, { certifySignature: sig.toString('base64') }),
      403,
      /not certified by the attestation key.*does not verify/,
    );
  });

  it('refuses a wrong ActivateCredential answer, then the challenge is spent', async () => {
    const c = fleet.client();
    const challenge = (await c.call<protocol.ChallengeResponse>('POST', '/v1/enroll/start', await startBody(c))).body;
    const wrong = await c.send<ErrBody>('POST', '/v1/enroll/finish', {
      challengeId: challenge.challengeId,
      credential: randomBytes(32).toString('base64'),
    });
    assert.equal(wrong.status, 403);
    assert.match(wrong.body.error.message, /ActivateCredential answer is wrong/);
    // Even the right answer is refused now: one attempt per challenge.
    const right = await tpmClient.attestation.activateCredential(ak, Buffer.from(challenge.credentialBlob, 'base64'));
    const late = await c.send<ErrBody>('POST', '/v1/enroll/finish', {
      challengeId: challenge.challengeId,
      credential: right.toString('base64'),
    });
    assert.equal(late.status, 403);
    assert.match(late.body.error.message, /already answered/);
  });

  it('refuses replays: a used nonce, an answered challenge, an enrolled EK', async () => {
    const c = fleet.client();
    const body = await startBody(c);
    const challenge = (await c.call<protocol.ChallengeResponse>('POST', '/v1/enroll/start', body)).body;
    await refusedAt(c, body, 403, /nonce is unknown, expired or already used/);
    const credential = (
      await tpmClient.attestation.activateCredential(ak, Buffer.from(challenge.credentialBlob, 'base64'))
    ).toString('base64');
    const finish = { challengeId: challenge.challengeId, credential };
    const ok = await c.send<protocol.EnrollFinished>('POST', '/v1/enroll/finish', finish);
    assert.equal(ok.status, 200);
    assert.equal(ok.body.status, 'pending');
    assert.equal(ok.body.keyProvider, 'tpm');
    const replay = await c.send<ErrBody>('POST', '/v1/enroll/finish', finish);
    assert.equal(replay.status, 403);
    assert.match(replay.body.error.message, /already answered/);
    // The same TPM cannot enroll a second identity, and an anonymous caller learns no device id or status...
    await refusedAt(c, await startBody(c), 409, /^(?!.*(dev-[0-9a-f]|pending|approved)).*already enrolled/);
    // The certificate poll needs the token.
    const poll = await c.send<ErrBody>('GET', `/v1/enroll/${ok.body.deviceId}/certificate`, undefined, {
      'x-edgeguard-poll-token': 'wrong',
    });
    assert.equal(poll.status, 401);
    const pending = await c.send<{ status: string }>('GET', `/v1/enroll/${ok.body.deviceId}/certificate`, undefined, {
      'x-edgeguard-poll-token': ok.body.pollToken,
    });
    assert.equal(pending.status, 202);
    // ...until an operator revokes and removes the old record.
    const admin = await fleet.adminCredential();
    const a = fleet.client(admin);
    assert.equal((await a.send('DELETE', `/v1/devices/${ok.body.deviceId}`)).status, 409, 'not revoked yet');
    assert.equal((await a.send('POST', `/v1/devices/${ok.body.deviceId}/revoke`)).status, 200);
    assert.equal((await a.send('DELETE', `/v1/devices/${ok.body.deviceId}`)).status, 200);
    const again = (await c.call<protocol.ChallengeResponse>('POST', '/v1/enroll/start', await startBody(c))).body;
    assert.match(again.challengeId, /^[A-Za-z0-9_-]{32}$/);
  });

  it('auto-approves an EK on the list (even without an EK certificate) and issues the certificate at once', async () => {
    const c = untrusting.client();
    const ekHash = ekPublicKeyHash(parseTpm2bPublic(Buffer.from(evidence.ekPublic, 'base64')));
    writeFileSync(join(untrusting.dataDir, 'auto-approve.txt'), `# factory batch 12\n${ekHash}\nnot-a-hash\n`);
    const { ekCertificate: _drop, ...noCert } = await startBody(c);
    const challenge = (await c.call<protocol.ChallengeResponse>('POST', '/v1/enroll/start', noCert)).body;
    const credential = (
      await tpmClient.attestation.activateCredential(ak, Buffer.from(challenge.credentialBlob, 'base64'))
    ).toString('base64');
    const done = (
      await c.call<protocol.EnrollFinished>('POST', '/v1/enroll/finish', {
        challengeId: challenge.challengeId,
        credential,
      })
    ).body;
    assert.equal(done.status, 'approved');
    const cert = await c.send<protocol.CertificateResponse>(
      'GET',
      `/v1/enroll/${done.deviceId}/certificate`,
      undefined,
      { 'x-edgeguard-poll-token': done.pollToken },
    );
    assert.equal(cert.status, 200);
    assert.equal(cert.body.fleetCa, untrusting.ca.rootPem);
    const leaf = new x509.X509Certificate(cert.body.certificateChain.split(/(?<=-----END CERTIFICATE-----)/)[0]!);
    assert.equal(leaf.subject, `CN=${done.deviceId}, OU=device, O=edgeguard fleet`);
    const device = await untrusting.server.ctx.store.getDevice(done.deviceId);
    assert.equal(device?.approved_by, 'auto-approve list');
    assert.equal(device?.ek_cert_pem, null);
  });

  it('refuses software devices unless the server allows them', async () => {
    const c = fleet.client();
    const nonce = (await c.call<protocol.NonceResponse>('POST', '/v1/enroll/nonce')).body.nonce;
    const keys = await generateP256();
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      name: 'CN=x',
      keys,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      attributes: [new x509.ChallengePasswordAttribute(nonce)],
    });
    const r = await c.send<ErrBody>('POST', '/v1/enroll/start', {
      keyProvider: 'software',
      nonce,
      csr: csr.toString('pem'),
    });
    assert.equal(r.status, 403);
    assert.match(r.body.error.message, /does not accept software-bound devices/);
  });
});

describe('software enrollment where allowed', () => {
  let fleet: TestFleet;
  before(async () => {
    fleet = await startTestFleet({ policy: { allowSoftwareDevices: true } });
  });
  after(async () => fleet.stop());

  it('needs the nonce inside the signed CSR, and records the device as software-bound', async () => {
    const c = fleet.client();
    const keys = await generateP256();
    const nonce1 = (await c.call<protocol.NonceResponse>('POST', '/v1/enroll/nonce')).body.nonce;
    const unsigned = await createCsr(keys, 'x');
    const r1 = await c.send<ErrBody>('POST', '/v1/enroll/start', {
      keyProvider: 'software',
      nonce: nonce1,
      csr: unsigned,
    });
    assert.equal(r1.status, 403);
    assert.match(r1.body.error.message, /challengePassword/);
    const nonce2 = (await c.call<protocol.NonceResponse>('POST', '/v1/enroll/nonce')).body.nonce;
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      name: 'CN=x',
      keys,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      attributes: [new x509.ChallengePasswordAttribute(nonce2)],
    });
    const r2 = await c.send<protocol.EnrollFinished>('POST', '/v1/enroll/start', {
      keyProvider: 'software',
      nonce: nonce2,
      csr: csr.toString('pem'),
      label: 'dev box',
    });
    assert.equal(r2.status, 200);
    assert.equal(r2.body.keyProvider, 'software');
    assert.equal(r2.body.status, 'pending');
    const device = await fleet.server.ctx.store.getDevice(r2.body.deviceId);
    assert.equal(device?.key_provider, 'software');
    // The same key cannot enroll twice.
    const nonce3 = (await c.call<protocol.NonceResponse>('POST', '/v1/enroll/nonce')).body.nonce;
    const csr3 = await x509.Pkcs10CertificateRequestGenerator.create({
      name: 'CN=x',
      keys,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      attributes: [new x509.ChallengePasswordAttribute(nonce3)],
    });
    assert.equal(
      (await c.send('POST', '/v1/enroll/start', { keyProvider: 'software', nonce: nonce3, csr: csr3.toString('pem') }))
        .status,
      409,
    );
  });
});
