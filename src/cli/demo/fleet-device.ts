/**
 * A small control plane of the demo's own and a device enrolled with it (approved by the demo
 * operator), for the steps that show a device talking to the fleet: software-key by default, or
 * bound to a given swtpm (whose local CA the control plane then trusts for EK certificates).
 */
import { randomBytes } from 'node:crypto';
import { copyFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { enrollDevice } from '../../fleet/index.ts';
import { TpmKeyStore, initDevice } from '../../keystore/index.ts';
import { TpmFloor } from '../../release/index.ts';
import { controlPlanePlugins, startServer, type RunningServer } from '../../server/index.ts';
import type { Swtpm } from '../../tpm/index.ts';
import type { DemoContext } from './context.ts';

export interface DemoFleet {
  server: RunningServer;
  controlPlane: ReturnType<typeof controlPlanePlugins>;
  deviceDir: string;
  deviceId: string;
}

/**
 * Start the control plane in ctx.path(name + '-control-plane') and enroll ctx.path(name + '-device');
 * `device.pcrPolicyKey` (PEM) gives a TPM device's binding key the operator's authorized PCR policy.
 */
export async function startDemoFleet(
  ctx: DemoContext,
  name: string,
  policy: { deviceCertDays?: number } = {},
  tpm?: Swtpm,
  device: { pcrPolicyKey?: string } = {},
): Promise<DemoFleet> {
  const dataDir = ctx.path(`${name}-control-plane`);
  const deviceDir = ctx.path(`${name}-device`);
  if (tpm) {
    await mkdir(join(dataDir, 'ek-roots'), { recursive: true });
    await copyFile(tpm.ca.rootCertPath, join(dataDir, 'ek-roots', 'swtpm-root.pem'));
    await copyFile(tpm.ca.issuerCertPath, join(dataDir, 'ek-roots', 'swtpm-issuer.pem'));
  }
  const controlPlane = controlPlanePlugins({ dataDir, checkpointIntervalMs: 200 });
  const server = await startServer({
    dataDir,
    listen: '127.0.0.1:0',
    caPassphrase: randomBytes(18).toString('base64url'),
    policy: { allowSoftwareDevices: true, ...policy },
    plugins: controlPlane.all,
  });
  try {
    const init = await initDevice({ dir: deviceDir, ...(tpm ? { tcti: tpm.tcti, ...device } : {}) });
    // As `edgeguard device init` does on a TPM device: the anti-rollback floor is provisioned with it.
    if (init.store instanceof TpmKeyStore) await new TpmFloor(init.store).provision();
    const enrolling = enrollDevice({
      deviceDir,
      server: server.url,
      caPem: server.ctx.ca.rootPem,
      label: `demo ${name}`,
      poll: { initialMs: 50, maxMs: 200, timeoutMs: 30_000 },
    });
    let deviceId: string | undefined;
    for (let i = 0; i < 600 && !deviceId; i++) {
      deviceId = (await server.ctx.store.listDevices({ status: 'pending' }))[0]?.id;
      if (!deviceId) await new Promise((r) => setTimeout(r, 50));
    }
    if (!deviceId) throw new Error('the demo device did not reach the pending state');
    await server.ctx.store.approveDevice(deviceId, 'demo-operator');
    await enrolling;
    return { server, controlPlane, deviceDir, deviceId };
  } catch (e) {
    await server.close();
    throw e;
  }
}
