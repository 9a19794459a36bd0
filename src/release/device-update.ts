/**
 * One update of a device: the release check (fetchRelease: TUF, OMS signature, header, the floor
 * of the release's kind) feeding the installer (install.ts). When the control plane's director
 * hands out releases, its fetch produces the same VerifiedRelease and calls installRelease.
 */
import { readFile, rm } from 'node:fs/promises';
import { EdgeguardError } from '../errors/index.ts';
import { fetchRelease } from './client.ts';
import { removeInterruptedReplacementsSync } from './durable-file.ts';
import { installRelease, recoverInstall, type InstallContext, type InstallOutcome } from './install.ts';
import { stepBoundary } from './install-steps.ts';
import { devicePcrPolicyKey, installPcrAuthorizations } from './shipped-authorizations.ts';

export interface DeviceUpdateOptions {
  install: InstallContext;
  /** The device's trusted TUF metadata directory (root.json provisioned). */
  metadataDir: string;
  metadataBaseUrl: string;
  targetBaseUrl: string;
  /** Downloads land here (removed after the install). */
  downloadDir: string;
  /** The package target to install, e.g. mnist/3/mnist.egm. */
  target: string;
}

export async function updateDevice(o: DeviceUpdateOptions): Promise<InstallOutcome & { target: string }> {
  stepBoundary('start');
  const ctx = o.install;
  try {
    await recoverInstall(ctx);
    removeInterruptedReplacementsSync(o.metadataDir);
    // A device whose binding key takes authorized PCR policies fetches the release's signed
    // authorizations (the predicted PCRs of the boot it brings) and keeps them before installing.
    const deviceDir = 'device' in ctx.contentKey ? ctx.contentKey.device : undefined;
    const pcrPolicyKey = deviceDir ? await devicePcrPolicyKey(deviceDir) : undefined;
    const fetched = await fetchRelease({
      metadataDir: o.metadataDir,
      metadataBaseUrl: o.metadataBaseUrl,
      targetBaseUrl: o.targetBaseUrl,
      downloadDir: o.downloadDir,
      target: o.target,
      publisherKeys: ctx.publicKeys,
      minimumVersion: 0,
      floorOf: (kind) => ctx.floor.read(kind),
      ...(pcrPolicyKey ? { pcrPolicyKey } : {}),
    });
    stepBoundary('fetched');
    const r = fetched.release;
    if (deviceDir && fetched.pcrAuthorizations.length > 0)
      await installPcrAuthorizations(deviceDir, r, fetched.pcrAuthorizations);
    try {
      const outcome = await installRelease(
        {
          kind: r.kind,
          name: r.name,
          version: r.version,
          minVersion: r.minVersion,
          headerSha256: r.headerSha256,
          packagePath: fetched.packagePath,
          signaturePath: fetched.signaturePath,
          ...(r.smokeTest && fetched.smokeInputPath
            ? {
                smokeTest: { input: await readFile(fetched.smokeInputPath), expectedLabel: r.smokeTest.expectedLabel },
              }
            : {}),
        },
        ctx,
      );
      stepBoundary('done');
      return { target: o.target, ...outcome };
    } finally {
      for (const p of [fetched.packagePath, fetched.signaturePath, fetched.smokeInputPath])
        if (p) await rm(p, { force: true });
    }
  } catch (e) {
    if (!(e instanceof EdgeguardError)) throw e;
    return {
      target: o.target,
      ok: false,
      at: new Date().toISOString(),
      floor: { provider: ctx.floor.provider, value: 0 },
      error: {
        code: e.code,
        message: e.message,
        ...(typeof e.details?.reason === 'string' ? { reason: e.details.reason } : {}),
      },
    };
  }
}
