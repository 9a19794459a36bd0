/**
 * The operator's path through the CLI: `edgeguard server` in its own process, `edgeguard admin
 * cert`, `edgeguard device list` over mutual TLS, graceful shutdown on SIGTERM; and the server on
 * PostgreSQL.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { promisify } from 'node:util';
import { createTempDatabase, type TempDatabase } from '../helpers/postgres.ts';
import { startTestFleet } from './fleet-helpers.ts';
import { generateP256, x509 } from '../../src/pki/index.ts';
import { startChild } from '../helpers/wait.ts';

const run = promisify(execFile);
const CLI = join(import.meta.dirname, '..', '..', 'bin', 'edgeguard.js');
const PASS = 'cli-test-passphrase';

describe('edgeguard server / admin cert / device list (CLI)', () => {
  let dir: string;
  let server: ChildProcess;
  let url: string;
  const env = { ...process.env, EDGEGUARD_CA_PASSPHRASE: PASS };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'eg-cli-server-'));
    // The server's start line (one JSON document on stdout) is its signal that it listens.
    const s = await startChild(
      process.execPath,
      [CLI, '--json', 'server', '--data', join(dir, 'data'), '--listen', '127.0.0.1:0', '--log-level', 'warn'],
      (out) => (out.trimEnd().endsWith('}') ? out : undefined),
      { env, what: 'edgeguard server' },
    );
    server = s.child;
    const started = JSON.parse(s.value) as { url: string; createdCa: boolean; database: string };
    assert.equal(started.createdCa, true);
    assert.match(started.database, /^sqlite:/);
    url = started.url;
  });
  after(() => {
    if (server.exitCode === null) server.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses to start without the CA passphrase', async () => {
    const r = await run(process.execPath, [CLI, 'server', '--data', join(dir, 'other'), '--listen', '127.0.0.1:0'], {
      env: { ...process.env, EDGEGUARD_CA_PASSPHRASE: '' },
    }).catch((e: { code: number; stderr: string }) => e);
    assert.equal((r as { code: number }).code, 2);
    assert.match((r as { stderr: string }).stderr, /EG_CONFIG: .*EDGEGUARD_CA_PASSPHRASE/);
  });

  it('issues an admin certificate that lists devices over mutual TLS', async () => {
    const prefix = join(dir, 'admin');
    const issued = JSON.parse(
      (
        await run(
          process.execPath,
          [CLI, '--json', 'admin', 'cert', '--data', join(dir, 'data'), '-o', prefix, '--name', 'alice'],
          { env },
        )
      ).stdout,
    ) as { serial: string };
    assert.match(issued.serial, /^[0-9a-f]+$/);
    assert.equal(statSync(`${prefix}.key`).mode & 0o077, 0);
    const conn = [
      '--server',
      url,
      '--cert',
      `${prefix}.crt`,
      '--key',
      `${prefix}.key`,
      '--ca',
      join(dir, 'data', 'fleet-ca.pem'),
    ];
    const listed = JSON.parse((await run(process.execPath, [CLI, '--json', 'device', 'list', ...conn])).stdout) as {
      ok: boolean;
      devices: unknown[];
    };
    assert.deepEqual(listed, { ok: true, devices: [] });
    // Human output, and a bad id refused by the server's validation.
    assert.match((await run(process.execPath, [CLI, 'device', 'list', ...conn])).stdout, /no devices/);
    const bad = await run(process.execPath, [CLI, 'device', 'approve', 'nope', ...conn]).catch(
      (e: { code: number; stderr: string }) => e,
    );
    assert.equal((bad as { code: number }).code, 7);
    assert.match((bad as { stderr: string }).stderr, /^EG_BAD_REQUEST: /);
    // Without the pinned CA the client refuses the server.
    const wrongCa = await run(process.execPath, [
      CLI,
      'device',
      'list',
      '--server',
      url,
      '--cert',
      `${prefix}.crt`,
      '--key',
      `${prefix}.key`,
      '--ca',
      `${prefix}.crt`,
    ]).catch((e: { code: number; stderr: string }) => e);
    assert.match((wrongCa as { stderr: string }).stderr, /EG_TLS/);
    assert.ok(readFileSync(`${prefix}.crt`, 'utf8').includes('BEGIN CERTIFICATE'));
  });

  it('shuts down gracefully on SIGTERM', async () => {
    server.kill('SIGTERM');
    const [code] = (await once(server, 'exit')) as [number | null];
    assert.equal(code, 0);
  });
});

describe('control plane on PostgreSQL', () => {
  let db: TempDatabase;
  before(async () => {
    db = await createTempDatabase('eg_server');
  });
  after(async () => db.drop());

  it('runs as two replicas on one database: a nonce from one is spent at the other, a revocation at one is enforced by the other', async () => {
    const replicaDb = await createTempDatabase('eg_replicas');
    const dataDir = mkdtempSync(join(tmpdir(), 'eg-replicas-'));
    const policy = { allowSoftwareDevices: true };
    const a = await startTestFleet({ dbUrl: replicaDb.url, dataDir, policy });
    const b = await startTestFleet({ dbUrl: replicaDb.url, dataDir, policy }); // same CA files, same database
    try {
      assert.equal(a.ca.root.serialNumber, b.ca.root.serialNumber);
      const nonce = (await a.client().call<{ nonce: string }>('POST', '/v1/enroll/nonce')).body.nonce;
      const keys = await generateP256();
      const csr = await x509.Pkcs10CertificateRequestGenerator.create({
        name: 'CN=x',
        keys,
        signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
        attributes: [new x509.ChallengePasswordAttribute(nonce)],
      });
      const body = { keyProvider: 'software', nonce, csr: csr.toString('pem') };
      assert.equal(
        (await b.client().send('POST', '/v1/enroll/start', body)).status,
        200,
        'B accepts the nonce A issued',
      );
      const replay = await a.client().send<{ error: { message: string } }>('POST', '/v1/enroll/start', body);
      assert.equal(replay.status, 403, 'and A knows it is spent');
      assert.match(replay.body.error.message, /already used/);
      const admin = await a.adminCredential();
      const dev = await a.deviceCredential();
      const onB = b.client(dev);
      assert.equal((await onB.send('GET', '/v1/device/self')).status, 200);
      assert.equal((await a.client(admin).send('POST', `/v1/devices/${dev.deviceId}/revoke`)).status, 200);
      assert.equal(
        (await onB.send('GET', '/v1/device/self')).status,
        401,
        'replica B enforces the revocation made on A',
      );
      assert.equal((await b.client(admin).send<{ devices: unknown[] }>('GET', '/v1/devices')).body.devices.length, 2);
    } finally {
      await a.stop();
      await b.stop();
      rmSync(dataDir, { recursive: true, force: true });
      await replicaDb.drop();
    }
  });

  it('authenticates, revokes and reports health with the PostgreSQL store', async () => {
    const fleet = await startTestFleet({ dbUrl: db.url });
    try {
      const h = await fleet.client().send<{ database: string }>('GET', '/healthz');
      assert.equal(h.body.database, 'postgres');
      const admin = await fleet.adminCredential();
      const dev = await fleet.deviceCredential();
      const c = fleet.client(dev);
      assert.equal((await c.send('GET', '/v1/device/self')).status, 200);
      assert.equal((await fleet.client(admin).send('POST', `/v1/devices/${dev.deviceId}/revoke`)).status, 200);
      assert.equal((await c.send('GET', '/v1/device/self')).status, 401);
    } finally {
      await fleet.stop();
    }
  });
});
