import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FleetCa, generateP256, privateKeyToPkcs8Pem, spkiOf } from '../../src/pki/index.ts';
import { startTestFleet, type TestFleet } from './fleet-helpers.ts';

type ErrBody = { error: { code: string; message: string } };

describe('control plane: who may call what (mutual TLS)', () => {
  let fleet: TestFleet;
  let admin: { cert: string; key: string; serial: string };
  let deviceA: { deviceId: string; cert: string; key: string; serial: string };
  let deviceB: { deviceId: string; cert: string; key: string; serial: string };

  before(async () => {
    fleet = await startTestFleet();
    admin = await fleet.adminCredential();
    deviceA = await fleet.deviceCredential();
    deviceB = await fleet.deviceCredential({ keyProvider: 'software' });
  });
  after(async () => fleet.stop());

  it('serves health, the CA and OpenAPI without a client certificate', async () => {
    const c = fleet.client();
    const h = await c.send<{ status: string; database: string }>('GET', '/healthz');
    assert.equal(h.status, 200);
    assert.deepEqual(h.body, { status: 'ok', database: 'sqlite' });
    const ca = await c.send<{ fleetCa: string }>('GET', '/v1/ca');
    assert.equal(ca.body.fleetCa, fleet.ca.rootPem);
    const spec = await c.send<{
      paths: Record<string, unknown>;
      components: { securitySchemes: Record<string, unknown> };
    }>('GET', '/docs/json');
    assert.equal(spec.status, 200);
    for (const p of [
      '/v1/enroll/start',
      '/v1/enroll/finish',
      '/v1/devices',
      '/v1/devices/{id}/approve',
      '/v1/device/self',
      '/metrics',
    ])
      assert.ok(p in spec.body.paths, `OpenAPI lacks ${p}`);
    assert.ok('adminCertificate' in spec.body.components.securitySchemes);
    const ui = await c.send<string>('GET', '/docs');
    assert.equal(ui.status, 200);
    assert.match(String(ui.headers['content-type']), /text\/html/);
    const crl = await c.send<string>('GET', '/v1/crl?format=pem');
    assert.match(String(crl.body), /^-----BEGIN X509 CRL-----/);
  });

  it('lets a device read its own record with its certificate', async () => {
    const r = await fleet
      .client(deviceA)
      .send<{ id: string; keyProvider: string; softwareBound: boolean }>('GET', '/v1/device/self');
    assert.equal(r.status, 200);
    assert.equal(r.body.id, deviceA.deviceId);
    assert.equal(r.body.softwareBound, false);
    const own = await fleet.client(deviceA).send<{ id: string }>('GET', `/v1/devices/${deviceA.deviceId}`);
    assert.equal(own.status, 200);
    const b = await fleet
      .client(deviceB)
      .send<{ softwareBound: boolean; keyProvider: string }>('GET', '/v1/device/self');
    assert.equal(b.body.keyProvider, 'software');
    assert.equal(b.body.softwareBound, true);
  });

  it('refuses a request without a client certificate', async () => {
    for (const [method, path] of [
      ['GET', '/v1/device/self'],
      ['GET', '/v1/devices'],
      ['GET', '/metrics'],
      ['POST', `/v1/devices/${deviceA.deviceId}/approve`],
    ] as const) {
      const r = await fleet.client().send<ErrBody>(method, path);
      assert.equal(r.status, 401, `${method} ${path}`);
      assert.equal(r.body.error.code, 'EG_UNAUTHORIZED');
      assert.match(r.body.error.message, /client certificate/);
    }
  });

  it('refuses a certificate from another CA', async () => {
    const otherDir = mkdtempSync(join(tmpdir(), 'eg-other-ca-'));
    try {
      const other = await FleetCa.create(otherDir, 'another-passphrase');
      const keys = await generateP256();
      const foreign = await other.issueAdminCertificate({ name: 'mallory', publicKey: await spkiOf(keys.publicKey) });
      const r = await fleet
        .client({ cert: foreign.chainPem, key: await privateKeyToPkcs8Pem(keys.privateKey) })
        .send<ErrBody>('GET', '/v1/devices');
      assert.equal(r.status, 401);
      assert.match(r.body.error.message, /not issued by this fleet/);
    } finally {
      rmSync(otherDir, { recursive: true, force: true });
    }
  });

  it('refuses an expired certificate', async () => {
    const day = 86400e3;
    const expired = await fleet.deviceCredential({
      validity: { notBefore: new Date(Date.now() - 40 * day), notAfter: new Date(Date.now() - day) },
    });
    const r = await fleet.client(expired).send<ErrBody>('GET', '/v1/device/self');
    assert.equal(r.status, 401);
    assert.match(r.body.error.message, /expired/);
    const expiredAdmin = await fleet.adminCredential('old-admin', {
      notBefore: new Date(Date.now() - 2 * day),
      notAfter: new Date(Date.now() - 1000),
    });
    assert.equal((await fleet.client(expiredAdmin).send('GET', '/v1/devices')).status, 401);
  });

  it('refuses a certificate that expires while its connection is kept alive', async () => {
    const shortLived = await fleet.deviceCredential({
      validity: { notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 1500) },
    });
    const c = fleet.client(shortLived);
    assert.equal((await c.send('GET', '/v1/device/self')).status, 200);
    await new Promise((r) => setTimeout(r, 2000));
    const r = await c.send<ErrBody>('GET', '/v1/device/self');
    assert.equal(r.status, 401);
    assert.match(r.body.error.message, /expired/);
  });

  it('refuses a fleet certificate the store has no record of', async () => {
    const unrecorded = await fleet.adminCredential('ghost', {}, false);
    const r = await fleet.client(unrecorded).send<ErrBody>('GET', '/v1/devices');
    assert.equal(r.status, 401);
    assert.match(r.body.error.message, /unknown serial/);
  });

  it('refuses a device certificate on admin endpoints', async () => {
    const c = fleet.client(deviceA);
    for (const [method, path] of [
      ['GET', '/v1/devices'],
      ['GET', '/metrics'],
      ['POST', `/v1/devices/${deviceB.deviceId}/revoke`],
      ['POST', `/v1/devices/${deviceB.deviceId}/approve`],
    ] as const) {
      const r = await c.send<ErrBody>(method, path);
      assert.equal(r.status, 403, `${method} ${path}`);
      assert.match(r.body.error.message, /admin certificate/);
    }
    // An admin certificate is not a device certificate either.
    assert.equal((await fleet.client(admin).send('GET', '/v1/device/self')).status, 403);
  });

  it("refuses device A reading device B's record", async () => {
    const r = await fleet.client(deviceA).send<ErrBody>('GET', `/v1/devices/${deviceB.deviceId}`);
    assert.equal(r.status, 403);
    assert.match(r.body.error.message, /only its own/);
    // The admin may.
    assert.equal((await fleet.client(admin).send('GET', `/v1/devices/${deviceB.deviceId}`)).status, 200);
  });

  it('refuses a revoked certificate, on the very next request of a kept-alive connection, and lists it in the CRL', async () => {
    const victim = await fleet.deviceCredential();
    const c = fleet.client(victim);
    assert.equal((await c.send('GET', '/v1/device/self')).status, 200);
    const rv = await fleet
      .client(admin)
      .send<{ revokedSerials: string[] }>('POST', `/v1/devices/${victim.deviceId}/revoke`, { reason: 'keyCompromise' });
    assert.equal(rv.status, 200);
    assert.deepEqual(rv.body.revokedSerials, [victim.serial]);
    const r = await c.send<ErrBody>('GET', '/v1/device/self');
    assert.equal(r.status, 401);
    assert.match(r.body.error.message, /revoked/);
    const crl = await fleet.client().send<Buffer>('GET', '/v1/crl');
    assert.equal(crl.status, 200);
    assert.equal(crl.headers['content-type'], 'application/pkix-crl');
    const { x509 } = await import('../../src/pki/index.ts');
    const parsed = new x509.X509Crl(crl.body);
    assert.ok(await parsed.verify({ publicKey: fleet.ca.issuing.publicKey }));
    assert.ok(parsed.entries.some((e) => e.serialNumber.toLowerCase().replace(/^0+/, '') === victim.serial));
    // Revoking twice is a conflict; an unknown device is not found.
    assert.equal((await fleet.client(admin).send('POST', `/v1/devices/${victim.deviceId}/revoke`)).status, 409);
    assert.equal((await fleet.client(admin).send('POST', '/v1/devices/dev-0000000000000000/revoke')).status, 404);
  });

  it('revokes a lost admin certificate by serial (not the one in use)', async () => {
    const lost = await fleet.adminCredential('lost-laptop');
    assert.equal((await fleet.client(lost).send('GET', '/v1/devices')).status, 200);
    const r = await fleet
      .client(admin)
      .send<{ role: string }>('POST', `/v1/certificates/${lost.serial.toUpperCase()}/revoke`, {
        reason: 'keyCompromise',
      });
    assert.equal(r.status, 200);
    assert.equal(r.body.role, 'admin');
    assert.equal((await fleet.client(lost).send('GET', '/v1/devices')).status, 401);
    const self = admin.serial;
    assert.equal((await fleet.client(admin).send('POST', `/v1/certificates/${self}/revoke`)).status, 403);
    assert.equal((await fleet.client(admin).send('POST', `/v1/certificates/${lost.serial}/revoke`)).status, 409);
    assert.equal((await fleet.client(admin).send('POST', '/v1/certificates/abc123/revoke')).status, 404);
    assert.equal((await fleet.client(admin).send('POST', '/v1/certificates/not-hex/revoke')).status, 400);
  });

  it('serves Prometheus metrics to admins', async () => {
    const r = await fleet.client(admin).send<string>('GET', '/metrics');
    assert.equal(r.status, 200);
    assert.match(r.body, /edgeguard_http_requests_total/);
    assert.match(r.body, /edgeguard_auth_refusals_total\{reason="role"\}/);
    assert.match(r.body, /edgeguard_devices\{status="approved"\}/);
  });

  it('validates bodies and parameters (bad input)', async () => {
    const a = fleet.client(admin);
    const cases: Array<[string, string, unknown]> = [
      ['POST', '/v1/devices/not-a-device-id/approve', undefined],
      ['GET', '/v1/devices/..%2f..%2fetc', undefined],
      ['POST', `/v1/devices/${deviceB.deviceId}/revoke`, { reason: 'because' }],
      ['POST', `/v1/devices/${deviceB.deviceId}/revoke`, { reason: 'keyCompromise', extra: 1 }],
      ['GET', '/v1/devices?status=bogus', undefined],
    ];
    for (const [m, p, body] of cases) {
      const r = await a.send<ErrBody>(m, p, body);
      assert.equal(r.status, 400, `${m} ${p} ${JSON.stringify(body)}`);
      assert.equal(r.body.error.code, 'EG_BAD_REQUEST');
    }
    const pub = fleet.client();
    const enrollCases: Array<[string, unknown]> = [
      ['/v1/enroll/start', {}],
      ['/v1/enroll/start', { keyProvider: 'tpm' }],
      ['/v1/enroll/start', { keyProvider: 'quantum', nonce: 'x', csr: 'y' }],
      ['/v1/enroll/start', { keyProvider: 'software', nonce: 'A'.repeat(43), csr: 'not pem' }],
      [
        '/v1/enroll/start',
        {
          keyProvider: 'tpm',
          nonce: 'A'.repeat(43),
          ekPublic: '!!!!',
          akPublic: 'AAAA',
          bindingPublic: 'AAAA',
          certifyInfo: 'AAAA',
          certifySignature: 'AAAA',
          csr: '-----BEGIN CERTIFICATE REQUEST-----',
        },
      ],
      ['/v1/enroll/finish', { challengeId: 'short', credential: 'AAAA' }],
      ['/v1/enroll/finish', { challengeId: 'A'.repeat(32), credential: 'A'.repeat(200) }],
    ];
    for (const [p, body] of enrollCases) {
      const r = await pub.send<ErrBody>('POST', p, body);
      assert.equal(r.status, 400, `${p} ${JSON.stringify(body)}`);
    }
    const raw = await pub.send<ErrBody>('POST', '/v1/enroll/start', undefined, { 'content-type': 'application/json' });
    assert.equal(raw.status, 400);
    assert.equal((await pub.send('GET', '/v1/nothing-here')).status, 404);
  });

  it('approves only pending devices', async () => {
    const pending = await fleet.deviceCredential({ status: 'pending' });
    // A pending device cannot use the API yet, even holding a certificate.
    assert.equal((await fleet.client(pending).send('GET', '/v1/device/self')).status, 401);
    assert.equal((await fleet.client(admin).send('POST', `/v1/devices/${deviceA.deviceId}/approve`)).status, 409);
    assert.equal((await fleet.client(admin).send('POST', '/v1/devices/dev-0000000000000001/approve')).status, 404);
  });
});

describe('control plane: enrollment rate limit', () => {
  let fleet: TestFleet;
  before(async () => {
    fleet = await startTestFleet({ policy: { enrollRateLimit: { max: 3, timeWindowMs: 60_000 } } });
  });
  after(async () => fleet.stop());

  it('answers 429 after the limit', async () => {
    const c = fleet.client();
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push((await c.send('POST', '/v1/enroll/nonce')).status);
    assert.deepEqual(statuses, [200, 200, 200, 429, 429]);
    const r = await c.send<ErrBody>('POST', '/v1/enroll/nonce');
    assert.equal(r.body.error.code, 'EG_RATE_LIMITED');
    // Authenticated routes are not rate limited by the enrollment limit.
    const admin = await fleet.adminCredential();
    for (let i = 0; i < 5; i++) assert.equal((await fleet.client(admin).send('GET', '/v1/devices')).status, 200);
  });
});
