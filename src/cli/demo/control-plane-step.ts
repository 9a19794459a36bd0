/**
 * Demo step of the control plane: a server on a free port with SQLite in the workspace, a device
 * (swtpm when installed, else the software key store, labelled) that enrolls with TPM evidence,
 * an operator approval, then the device's first mutual-TLS call and the refusals that matter, and
 * a flood of idle connections from one address held to its cap while the operator is still served.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect } from 'node:net';
import { copyFile, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { initDevice } from '../../keystore/index.ts';
import { missingSwtpmBinaries, startSwtpm, type Swtpm } from '../../tpm/index.ts';
import { startServer, type RunningServer } from '../../server/index.ts';
import { generateP256, privateKeyToPkcs8Pem, spkiOf } from '../../pki/index.ts';
import { enrollDevice, loadDeviceCredential, deviceClient, FleetClient } from '../../fleet/index.ts';
import type { DemoStep } from './context.ts';

export const controlPlaneStep: DemoStep = {
  id: 'control-plane',
  title: 'Control plane: fleet CA, TPM-proven enrollment, approval, mutual TLS',
  async run(ctx) {
    const useTpm = missingSwtpmBinaries().length === 0;
    const dataDir = ctx.path('control-plane');
    const deviceDir = ctx.path('fleet-device');
    let tpm: Swtpm | undefined;
    let server: RunningServer | undefined;
    const clients: FleetClient[] = [];
    try {
      await mkdir(join(dataDir, 'ek-roots'), { recursive: true });
      if (useTpm) {
        tpm = await startSwtpm();
        // The operator trusts the TPM vendor's CA; for swtpm that is its local CA.
        await copyFile(tpm.ca.rootCertPath, join(dataDir, 'ek-roots', 'swtpm-root.pem'));
        await copyFile(tpm.ca.issuerCertPath, join(dataDir, 'ek-roots', 'swtpm-issuer.pem'));
      } else {
        ctx.say('swtpm is not installed: this device uses the SOFTWARE key store and enrolls as software-bound.');
      }
      // The CA passphrase would come from EDGEGUARD_CA_PASSPHRASE; the demo makes a throwaway one.
      const passphrase = randomBytes(18).toString('base64url');
      server = await startServer({
        dataDir,
        listen: '127.0.0.1:0',
        caPassphrase: passphrase,
        policy: { allowSoftwareDevices: !useTpm },
      });
      ctx.command(
        `server --data ${dataDir} --listen 127.0.0.1:${server.port}    # EDGEGUARD_CA_PASSPHRASE set; SQLite in ${dataDir}`,
      );
      ctx.say(`fleet CA created (root and issuing CA keys encrypted on disk); API docs at ${server.url}/docs`);

      // An admin certificate (what `edgeguard admin cert` writes), recorded so it can be revoked.
      const adminKeys = await generateP256();
      const admin = await server.ctx.ca.issueAdminCertificate({
        name: 'demo-operator',
        publicKey: await spkiOf(adminKeys.publicKey),
      });
      await server.ctx.store.recordCertificate({
        serial: admin.serial,
        device_id: null,
        role: 'admin',
        subject: admin.subject,
        not_before: admin.notBefore.toISOString(),
        not_after: admin.notAfter.toISOString(),
        pem: admin.chainPem,
      });
      ctx.command(`admin cert --data ${dataDir} -o admin`);
      const adminClient = new FleetClient({
        server: server.url,
        ca: server.ctx.ca.rootPem,
        cert: admin.chainPem,
        key: await privateKeyToPkcs8Pem(adminKeys.privateKey),
      });
      clients.push(adminClient);

      await initDevice({ dir: deviceDir, ...(tpm ? { tcti: tpm.tcti } : {}) });
      ctx.command(`device init --dir ${deviceDir} ${tpm ? `--tpm ${tpm.tcti}` : '--software'}`);
      const caPem = await readFile(join(dataDir, 'fleet-ca.pem'), 'utf8');
      ctx.command(`agent enroll --device ${deviceDir} --server ${server.url} --ca ${join(dataDir, 'fleet-ca.pem')}`);
      const enrolling = enrollDevice({
        deviceDir,
        server: server.url,
        caPem,
        label: 'demo camera',
        poll: { initialMs: 100, maxMs: 500, timeoutMs: 60_000 },
        onProgress: (m) => ctx.say(`  agent: ${m}`),
      });
      let deviceId: string | undefined;
      for (let i = 0; i < 300 && !deviceId; i++) {
        const list = await adminClient.call<{ devices: Array<{ id: string }> }>('GET', '/v1/devices?status=pending');
        deviceId = list.body.devices[0]?.id;
        if (!deviceId) await new Promise((r) => setTimeout(r, 100));
      }
      if (!deviceId) throw new Error('the device did not reach the pending state');
      ctx.command(`device approve ${deviceId}`);
      await adminClient.call('POST', `/v1/devices/${deviceId}/approve`);
      const enrolled = await enrolling;

      const cred = await loadDeviceCredential(deviceDir);
      const device = deviceClient(cred);
      clients.push(device);
      const self = await device.call<{ id: string; keyProvider: string; softwareBound: boolean }>(
        'GET',
        '/v1/device/self',
      );
      ctx.say(
        `device ${self.body.id} called GET /v1/device/self over mutual TLS: key provider ${self.body.keyProvider}${self.body.softwareBound ? ' (software-bound, NOT hardware-bound)' : ''}`,
      );
      const list = await adminClient.call<{ devices: Array<{ id: string; status: string; keyProvider: string }> }>(
        'GET',
        '/v1/devices',
      );
      ctx.command('device list');
      for (const d of list.body.devices) ctx.say(`${d.id}  ${d.status}  ${d.keyProvider}`);

      const anonymous = new FleetClient({ server: server.url, ca: caPem });
      clients.push(anonymous);
      const noCert = (await anonymous.send('GET', '/v1/device/self')).status;
      const onAdmin = (await device.send('GET', '/v1/devices')).status;
      ctx.say(
        `refused: no client certificate -> HTTP ${noCert}; device certificate on an admin endpoint -> HTTP ${onAdmin}`,
      );
      await adminClient.call('POST', `/v1/devices/${deviceId}/revoke`, { reason: 'keyCompromise' });
      const afterRevoke = (await device.send('GET', '/v1/device/self')).status;
      ctx.command(`device revoke ${deviceId} --reason keyCompromise`);
      ctx.say(
        `the revoked device's next call (same kept-alive connection) -> HTTP ${afterRevoke}; its serial is in GET /v1/crl`,
      );
      const flood = await connectionFlood(server, adminClient);
      ctx.say(
        `an anonymous flood of ${FLOOD} idle connections from one address: ${flood.held} held (with the operator's own connection, the per-address cap of ${flood.cap}; no TLS handshake until they speak), ${flood.refused} closed unread after a second; the operator's kept-alive call meanwhile -> HTTP ${flood.adminStatus}`,
      );
      return {
        deviceId: enrolled.deviceId,
        keyProvider: enrolled.keyProvider,
        noClientCert: noCert,
        deviceOnAdmin: onAdmin,
        afterRevoke,
        flood,
      };
    } finally {
      for (const c of clients) c.close();
      await server?.close();
      await tpm?.remove();
    }
  },
};

const FLOOD = 100;

/**
 * FLOOD raw TCP connections from 127.0.0.1 that never send a byte: the server holds its
 * per-address cap of them and closes the rest unread (limits.connectionsPerAddress,
 * overCapCloseDelayMs); the admin's kept-alive connection is answered meanwhile.
 */
async function connectionFlood(
  server: RunningServer,
  admin: FleetClient,
): Promise<{ held: number; refused: number; cap: number; adminStatus: number }> {
  const refusedSoFar = async () => {
    const text = await server.ctx.registry.getSingleMetricAsString('edgeguard_connections_refused_total');
    return Number(/reason="per_address"\} (\d+)/.exec(text)?.[1] ?? 0);
  };
  const before = await refusedSoFar();
  const sockets = await Promise.all(
    Array.from({ length: FLOOD }, async () => {
      const socket = connect(server.port, '127.0.0.1');
      socket.on('error', () => undefined);
      await once(socket, 'connect').catch(() => undefined);
      return socket;
    }),
  );
  try {
    const cap = server.ctx.policy.limits.connectionsPerAddress;
    // Every connection has been accepted once the refusals beyond the cap are counted and stay put.
    let refused = -1;
    for (let i = 0; i < 100; i++) {
      await new Promise((r) => setTimeout(r, 50));
      const now = (await refusedSoFar()) - before;
      if (now === refused && now >= FLOOD - cap) break;
      refused = now;
    }
    const adminStatus = (await admin.send('GET', '/v1/devices')).status;
    return { held: FLOOD - refused, refused, cap, adminStatus };
  } finally {
    for (const socket of sockets) socket.destroy();
  }
}
