/** Test helpers: a running control plane in a temp dir, and clients holding certificates it issued. */
import { randomBytes, type webcrypto } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import {
  startServer,
  type RunningServer,
  type ServerPlugin,
  type ServerPolicyOptions,
} from '../../src/server/index.ts';
import { FleetCa, generateP256, privateKeyToPkcs8Pem, spkiOf, type ValidityOptions } from '../../src/pki/index.ts';
import { FleetClient } from '../../src/fleet/index.ts';
import type { KeyProvider } from '../../src/store/index.ts';

export const TEST_PASSPHRASE = 'test-ca-passphrase';

export interface TestFleet {
  server: RunningServer;
  dataDir: string;
  ca: FleetCa;
  client(cred?: { cert: string; key: string }): FleetClient;
  adminCredential(
    name?: string,
    validity?: ValidityOptions,
    record?: boolean,
  ): Promise<{ cert: string; key: string; serial: string }>;
  /** Inserts an approved device record and issues its certificate (bypassing the TPM protocol). */
  deviceCredential(opts?: {
    keyProvider?: KeyProvider;
    validity?: ValidityOptions;
    status?: 'approved' | 'pending';
  }): Promise<{ deviceId: string; cert: string; key: string; serial: string; keys: webcrypto.CryptoKeyPair }>;
  stop(): Promise<void>;
}

export async function startTestFleet(
  opts: {
    dbUrl?: string;
    policy?: ServerPolicyOptions;
    dataDir?: string;
    plugins?: ServerPlugin[];
    logger?: Logger;
    /** HOST:PORT; 127.0.0.1:0 when absent. */
    listen?: string;
  } = {},
): Promise<TestFleet> {
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'eg-fleet-'));
  const server = await startServer({
    dataDir,
    listen: opts.listen ?? '127.0.0.1:0',
    dbUrl: opts.dbUrl,
    caPassphrase: TEST_PASSPHRASE,
    policy: opts.policy ?? {},
    ...(opts.plugins ? { plugins: opts.plugins } : {}),
    ...(opts.logger ? { logger: opts.logger } : {}),
  });
  const ca = server.ctx.ca;
  const clients: FleetClient[] = [];
  const fleet: TestFleet = {
    server,
    dataDir,
    ca,
    client(cred) {
      const c = new FleetClient({ server: server.url, ca: ca.rootPem, cert: cred?.cert, key: cred?.key });
      clients.push(c);
      return c;
    },
    async adminCredential(name = 'test-admin', validity = {}, record = true) {
      const keys = await generateP256();
      const issued = await ca.issueAdminCertificate({ name, publicKey: await spkiOf(keys.publicKey), ...validity });
      if (record) {
        await server.ctx.store.recordCertificate({
          serial: issued.serial,
          device_id: null,
          role: 'admin',
          subject: issued.subject,
          not_before: issued.notBefore.toISOString(),
          not_after: issued.notAfter.toISOString(),
          pem: issued.chainPem,
        });
      }
      return { cert: issued.chainPem, key: await privateKeyToPkcs8Pem(keys.privateKey), serial: issued.serial };
    },
    async deviceCredential(o = {}) {
      const keys = await generateP256();
      const deviceId = `dev-${randomBytes(8).toString('hex')}`;
      await server.ctx.store.insertDevice({
        id: deviceId,
        ek_pub_sha256: randomBytes(32).toString('hex'),
        ek_cert_pem: null,
        ak_public: '',
        ak_name: '',
        binding_public: '',
        key_provider: o.keyProvider ?? 'tpm',
        status: 'pending',
        label: null,
        csr_pem: '',
        poll_token_sha256: randomBytes(32).toString('hex'),
        created_at: new Date().toISOString(),
      });
      if ((o.status ?? 'approved') === 'approved') await server.ctx.store.approveDevice(deviceId, 'test');
      const issued = await ca.issueDeviceCertificate({
        deviceId,
        keyProvider: o.keyProvider ?? 'tpm',
        publicKey: await spkiOf(keys.publicKey),
        ...(o.validity ?? {}),
      });
      await server.ctx.store.recordCertificate({
        serial: issued.serial,
        device_id: deviceId,
        role: 'device',
        subject: issued.subject,
        not_before: issued.notBefore.toISOString(),
        not_after: issued.notAfter.toISOString(),
        pem: issued.chainPem,
      });
      return {
        deviceId,
        cert: issued.chainPem,
        key: await privateKeyToPkcs8Pem(keys.privateKey),
        serial: issued.serial,
        keys,
      };
    },
    async stop() {
      for (const c of clients) c.close();
      await server.close();
      if (opts.dataDir === undefined) rmSync(dataDir, { recursive: true, force: true });
    },
  };
  return fleet;
}
