/**
 * The control plane's API fuzzer: every route of its own OpenAPI document (GET /docs/json), with
 * every credential kind (none, self-signed, foreign CA, expired, revoked, device, other device,
 * admin), gets valid-shaped and hostile requests (test/helpers/openapi-fuzz.ts). Invariants:
 * never a 5xx, never a non-EG error body, never a 2xx from a protected route without a
 * certificate its security requirement names, nor from one device about another.
 * EDGEGUARD_FUZZ_LONG=1 runs >= 10,000 requests per route.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Agent } from 'node:https';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { controlPlanePlugins } from '../../src/server/index.ts';
import { FleetCa, generateP256, privateKeyToPkcs8Pem, spkiOf, x509 } from '../../src/pki/index.ts';
import {
  bodyFor,
  invariantBroken,
  operationsOf,
  pathFor,
  queryFor,
  rawRequest,
  runsPerRoute,
  type Operation,
} from '../helpers/openapi-fuzz.ts';
import { startTestFleet, type TestFleet } from './fleet-helpers.ts';

type Kind = 'none' | 'selfSigned' | 'foreignCa' | 'expired' | 'revoked' | 'device' | 'otherDevice' | 'admin';
type Credential = { cert: string; key: string } | undefined;

const DAY = 86_400_000;

/**
 * Breaches the fuzzer found that belong to the control-plane error-body work done in parallel
 * (issue 11, "uniform error bodies"): counted and reported, not failed, until that lands. Remove
 * an entry once the server answers it in the EG shape.
 */
async function selfSigned(): Promise<{ cert: string; key: string }> {
  const keys = await generateP256();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01',
    name: 'CN=mallory, OU=admin',
    notBefore: new Date(Date.now() - DAY),
    notAfter: new Date(Date.now() + DAY),
    keys,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
  });
  return { cert: cert.toString('pem'), key: await privateKeyToPkcs8Pem(keys.privateKey) };
}

async function foreignCa(dir: string): Promise<{ cert: string; key: string }> {
  const other = await FleetCa.create(dir, 'another-passphrase');
  const keys = await generateP256();
  const issued = await other.issueAdminCertificate({ name: 'mallory', publicKey: await spkiOf(keys.publicKey) });
  return { cert: issued.chainPem, key: await privateKeyToPkcs8Pem(keys.privateKey) };
}

/** Which answers `kind` may get a 2xx for: the route is open, or the certificate is one it names. */
function mayPass(op: Operation, kind: Kind, path: string, deviceA: string): boolean {
  if (op.security.length === 0) return true;
  if (kind === 'admin') return op.security.includes('adminCertificate');
  if (kind === 'device') return op.security.includes('deviceCertificate');
  // Another device never gets a 2xx about device A.
  if (kind === 'otherDevice') return op.security.includes('deviceCertificate') && !path.includes(deviceA);
  return false;
}

describe('control-plane API fuzzer', () => {
  let fleet: TestFleet;
  let foreignDir: string;
  const creds = new Map<Kind, Credential>();
  let deviceA: string;
  let deviceB: string;
  before(async () => {
    foreignDir = mkdtempSync(join(tmpdir(), 'eg-fuzz-foreign-'));
    const dataDir = mkdtempSync(join(tmpdir(), 'eg-fuzz-fleet-'));
    fleet = await startTestFleet({
      dataDir,
      plugins: controlPlanePlugins({ dataDir }).all,
      // Refused requests close their connection, so the fuzzer reconnects far faster than any client:
      // the per-address enrollment and connection rates would answer in its place.
      policy: {
        allowSoftwareDevices: true,
        enrollRateLimit: { max: 1_000_000, timeWindowMs: 60_000 },
        limits: { connectionRatePerAddress: 1_000_000, connectionBurstPerAddress: 1_000_000 },
      },
    });
    const admin = await fleet.adminCredential('fuzz-admin');
    const a = await fleet.deviceCredential();
    const b = await fleet.deviceCredential();
    const revoked = await fleet.deviceCredential();
    await fleet.client(admin).call('POST', `/v1/devices/${revoked.deviceId}/revoke`, { reason: 'keyCompromise' });
    const expired = await fleet.deviceCredential({
      validity: { notBefore: new Date(Date.now() - 40 * DAY), notAfter: new Date(Date.now() - DAY) },
    });
    deviceA = a.deviceId;
    deviceB = b.deviceId;
    creds.set('none', undefined);
    creds.set('selfSigned', await selfSigned());
    creds.set('foreignCa', await foreignCa(foreignDir));
    creds.set('expired', expired);
    creds.set('revoked', revoked);
    creds.set('device', a);
    creds.set('otherDevice', b);
    creds.set('admin', admin);
  });
  after(async () => {
    await fleet.stop();
    rmSync(fleet.dataDir, { recursive: true, force: true });
    rmSync(foreignDir, { recursive: true, force: true });
  });

  it('every route, every credential kind: no 5xx, EG_* errors, nothing protected without its certificate', async () => {
    const doc = (await fleet.client().send('GET', '/docs/json')).body;
    const ops = operationsOf(doc);
    assert.ok(ops.length >= 10, `the document lists only ${ops.length} operations`);
    const kinds = [...creds.keys()];
    const agents = new Map(
      kinds.map((k) => {
        const c = creds.get(k);
        const agent = new Agent({
          keepAlive: true,
          maxSockets: 1,
          ca: fleet.ca.rootPem,
          minVersion: 'TLSv1.3',
          ...(c ? { cert: c.cert, key: c.key } : {}),
        });
        return [k, agent] as const;
      }),
    );
    const ids = () => [deviceA, deviceB, 'dev-0000000000000000'];
    try {
      for (const op of ops) {
        await fc.assert(
          fc.asyncProperty(
            fc.constantFrom(...kinds),
            pathFor(op, ids()),
            queryFor(op),
            bodyFor(op),
            async (kind, path, query, body) => {
              const sent = op.method === 'GET' ? { ...body, bytes: undefined } : body;
              const r = await rawRequest(fleet.server.url, agents.get(kind)!, op.method, path + query, sent);
              const where = `${kind} ${op.method} ${path}${query}`;
              const broken = invariantBroken(r);
              assert.equal(broken, undefined, `${where}: ${broken}`);
              if (r.status < 300 && !mayPass(op, kind, path, deviceA))
                assert.fail(`${where}: ${r.status} without the right certificate: ${r.text.slice(0, 200)}`);
            },
          ),
          { numRuns: runsPerRoute(1) },
        );
      }
    } finally {
      for (const a of agents.values()) a.destroy();
    }
    assert.equal((await fleet.client().send('GET', '/healthz')).status, 200);
  });

  it('a path parameter longer than the router allows is answered with an EG body, not the framework one', async () => {
    const admin = creds.get('admin')!;
    const agent = new Agent({ ca: fleet.ca.rootPem, cert: admin.cert, key: admin.key, minVersion: 'TLSv1.3' });
    try {
      const r = await rawRequest(fleet.server.url, agent, 'GET', `/v1/devices/${'d'.repeat(200)}/attestation`, {
        contentType: undefined,
        bytes: undefined,
      });
      assert.equal(r.status, 414);
      assert.equal(invariantBroken(r), undefined);
      assert.equal(JSON.parse(r.text).error.code, 'EG_BAD_REQUEST');
    } finally {
      agent.destroy();
    }
  });
});
