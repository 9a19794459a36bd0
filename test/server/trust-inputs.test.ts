import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { FLEET_CA_FILE } from '../../src/pki/index.ts';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isEdgeguardError } from '../../src/errors/index.ts';
import { startServer } from '../../src/server/index.ts';
import { protocol } from '../../src/attest/index.ts';
import { generateP256, x509 } from '../../src/pki/index.ts';
import { TEST_PASSPHRASE, startTestFleet } from './fleet-helpers.ts';

const start = (dataDir: string) =>
  startServer({ dataDir, listen: '127.0.0.1:0', caPassphrase: TEST_PASSPHRASE, logger: false });

describe('server data directory: private, and trust inputs nobody else can write', () => {
  it('creates its directories 0700 under umask 000', async () => {
    const parent = mkdtempSync(join(tmpdir(), 'eg-umask-'));
    const dataDir = join(parent, 'data');
    const previous = process.umask(0);
    try {
      const server = await start(dataDir);
      await server.close();
    } finally {
      process.umask(previous);
    }
    for (const dir of [dataDir, join(dataDir, 'ek-roots'), join(dataDir, 'pki')])
      assert.equal(statSync(dir).mode & 0o777, 0o700, dir);
    rmSync(parent, { recursive: true, force: true });
  });

  for (const [what, path] of [
    ['the data directory', ''],
    ['ek-roots/', 'ek-roots'],
    ['a vendor CA in ek-roots/', 'ek-roots/vendor.pem'],
    ['auto-approve.txt', 'auto-approve.txt'],
    ['the issuing CA key', 'pki/issuing-ca.key'],
    ['the SQLite database', 'edgeguard.db'],
  ] as const) {
    it(`refuses to start when ${what} is group- or world-writable, naming the chmod to run`, async () => {
      const dataDir = mkdtempSync(join(tmpdir(), 'eg-trust-'));
      try {
        await (await start(dataDir)).close();
        writeFileSync(join(dataDir, 'ek-roots', 'vendor.pem'), readFileSync(join(dataDir, FLEET_CA_FILE)), {
          mode: 0o644,
        });
        writeFileSync(join(dataDir, 'auto-approve.txt'), '', { mode: 0o600 });
        const target = join(dataDir, path);
        for (const mode of [0o020, 0o002]) {
          const base = statSync(target).mode & 0o777;
          chmodSync(target, base | mode);
          await assert.rejects(start(dataDir), (e: unknown) => {
            assert.ok(isEdgeguardError(e, 'EG_UNSAFE_PERMISSIONS'), String(e));
            assert.ok((e as Error).message.includes(target), (e as Error).message);
            assert.match((e as Error).message, /chmod go-w /);
            return true;
          });
          chmodSync(target, base);
        }
        await (await start(dataDir)).close();
      } finally {
        rmSync(dataDir, { recursive: true, force: true });
      }
    });
  }
});

describe('EK roots re-read while the server runs', () => {
  it('takes a vendor CA added after start', { timeout: 20_000 }, async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'eg-ekroots-'));
    const server = await start(dataDir);
    try {
      const anchors = server.ctx.ekTrust.anchors;
      assert.equal(anchors.length, 0);
      const vendor = join(dataDir, 'ek-roots', 'vendor.pem');
      writeFileSync(vendor, readFileSync(join(dataDir, FLEET_CA_FILE)), { mode: 0o644 });
      while (anchors.length === 0) await new Promise((resolve) => setTimeout(resolve, 25));
      assert.equal(anchors.length, 1);
    } finally {
      await server.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('an auto-approve list past its cap', () => {
  it('is refused at start, and one that grew past it after start approves nothing without a 5xx', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'eg-autoapprove-'));
    const list = join(dataDir, 'auto-approve.txt');
    try {
      writeFileSync(list, '', { mode: 0o600 });
      truncateSync(list, 64 * 1024 * 1024);
      const refused = await start(dataDir).then(
        async (running) => {
          await running.close();
          return undefined;
        },
        (e: unknown) => e,
      );
      assert.ok(isEdgeguardError(refused, 'EG_FILE_TOO_LARGE'), `started, or failed otherwise: ${String(refused)}`);
      assert.ok(refused.message.includes(list), refused.message);
      truncateSync(list, 0);
      const fleet = await startTestFleet({ dataDir, policy: { allowSoftwareDevices: true } });
      try {
        truncateSync(list, 64 * 1024 * 1024);
        const c = fleet.client();
        const keys = await generateP256();
        const nonce = (await c.call<protocol.NonceResponse>('POST', '/v1/enroll/nonce')).body.nonce;
        const csr = await x509.Pkcs10CertificateRequestGenerator.create({
          name: 'CN=x',
          keys,
          signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
          attributes: [new x509.ChallengePasswordAttribute(nonce)],
        });
        const r = await c.send<protocol.EnrollFinished>('POST', '/v1/enroll/start', {
          keyProvider: 'software',
          nonce,
          csr: csr.toString('pem'),
        });
        assert.equal(r.status, 200, JSON.stringify(r.body));
        assert.equal(r.body.status, 'pending');
        assert.ok(!JSON.stringify(r.body).includes(dataDir), 'the anonymous caller is not told server paths');
      } finally {
        await fleet.stop();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
