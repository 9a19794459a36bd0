/**
 * One update of a device, in either of its two modes, feeding the installer (install.ts):
 *
 *   - repository: the release check (fetchRelease: TUF, OMS signature, header, the floor of the
 *     release's kind) of a configured target;
 *   - director: the control plane's director names what this device runs (fetchAssignedRelease,
 *     over the device's mTLS identity, only while its attestation passes) with the content key
 *     wrapped to this device's TPM binding key; the slot keeps that wrapped key, and the outcome
 *     goes back to the control plane as a signed version report.
 *
 * Either runs whole (recovery, metadata refresh, download, install, report) under the data
 * directory's install lock: another install running is an EG_BUSY outcome, nothing touched.
 */
import { rm } from 'node:fs/promises';
import type { BaseFetcher } from 'tuf-js';
import { EdgeguardError } from '../errors/index.ts';
import { fetchAssignedRelease, type AssignedRelease, type FetchAssignedOptions } from './assigned.ts';
import { fetchRelease, type FetchedRelease } from './client.ts';
import { removeInterruptedReplacementsSync } from './durable-file.ts';
import { installRelease, recoverInstall, type InstallContext, type InstallOutcome } from './install.ts';
import { withInstallLock } from './install-lock.ts';
import { stepBoundary } from './install-steps.ts';
import { verifiedReleaseOf } from './verified-release.ts';
import type { ReleaseCustom } from './release-target.ts';
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
  /** How the repository is reached (default: tuf-js's own fetcher); the agent passes a RepositoryFetcher with its egress allowlist. */
  fetcher?: BaseFetcher | undefined;
}

/** A verified download, whatever fetched it: what `installFetched` installs. */
interface Fetched {
  release: ReleaseCustom;
  packagePath: string;
  signaturePath: string;
  smokeInputPath?: string | undefined;
  pcrAuthorizations: FetchedRelease['pcrAuthorizations'];
  /** The director's wrapped content key for this device; default: the configured one. */
  wrappedKey?: string | undefined;
}

/** The device directory of a TPM/software key store, and its PCR policy key when it has one. */
async function devicePolicy(ctx: InstallContext) {
  const deviceDir = 'device' in ctx.contentKey ? ctx.contentKey.device : undefined;
  const pcrPolicyKey = deviceDir ? await devicePcrPolicyKey(deviceDir) : undefined;
  return { deviceDir, pcrPolicyKey };
}

/** Recover an interrupted install and metadata write: the start of either mode. */
async function recover(ctx: InstallContext, metadataDir: string): Promise<void> {
  stepBoundary('start');
  await recoverInstall(ctx);
  removeInterruptedReplacementsSync(metadataDir);
}

/**
 * The release's signed PCR authorizations (the predicted PCRs of the boot it brings) go on the
 * device first, then the A/B install; the downloads are removed either way.
 */
async function installFetched(f: Fetched, ctx: InstallContext, deviceDir: string | undefined): Promise<InstallOutcome> {
  const r = f.release;
  try {
    if (deviceDir && f.pcrAuthorizations.length > 0) await installPcrAuthorizations(deviceDir, r, f.pcrAuthorizations);
    const outcome = await installRelease(await verifiedReleaseOf(f, f.wrappedKey), ctx);
    stepBoundary('done');
    return outcome;
  } finally {
    for (const p of [f.packagePath, f.signaturePath, f.smokeInputPath]) if (p) await rm(p, { force: true });
  }
}

/** A refusal or failure before the installer ran, as an outcome (never thrown). */
function refusedOutcome(e: unknown, ctx: InstallContext): InstallOutcome {
  if (!(e instanceof EdgeguardError)) throw e;
  return {
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

/** Run one update under the install lock; EG_BUSY (another install runs) becomes the outcome. */
async function locked<T extends object>(ctx: InstallContext, fn: () => Promise<T>): Promise<T | InstallOutcome> {
  try {
    return await withInstallLock(ctx.dataDir, fn, { waitMs: ctx.lockWaitMs });
  } catch (e) {
    return refusedOutcome(e, ctx);
  }
}

export async function updateDevice(o: DeviceUpdateOptions): Promise<InstallOutcome & { target: string }> {
  return { target: o.target, ...(await locked(o.install, () => updateDeviceLocked(o))) };
}

async function updateDeviceLocked(o: DeviceUpdateOptions): Promise<InstallOutcome & { target: string }> {
  const ctx = o.install;
  try {
    await recover(ctx, o.metadataDir);
    const { deviceDir, pcrPolicyKey } = await devicePolicy(ctx);
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
      fetcher: o.fetcher,
    });
    stepBoundary('fetched');
    return { target: o.target, ...(await installFetched(fetched, ctx, deviceDir)) };
  } catch (e) {
    return { target: o.target, ...refusedOutcome(e, ctx) };
  }
}

/** What the device tells the control plane after an install (fleet's reportInstalledVersion). */
export interface DirectorReport {
  release: string;
  version: number;
  status: 'installed' | 'failed';
  detail?: string;
}

export interface DirectorUpdateOptions {
  install: InstallContext;
  /** The director fetch: the device's mTLS identity, pinned director keys, metadata and download dirs. */
  director: Omit<FetchAssignedOptions, 'publisherKeys' | 'minimumVersion' | 'floorOf' | 'pcrPolicyKey'>;
  /** Sends the signed version report; its failure is noted in the outcome, the install stands. */
  report: (r: DirectorReport) => Promise<void>;
}

export type DirectorUpdateOutcome = InstallOutcome & {
  /** The repository target the director assigned (absent when nothing is assigned or it was refused). */
  target?: string | undefined;
  /** The director assigns this device nothing: nothing was fetched or installed. */
  nothingAssigned?: true;
  directorVersion?: number | undefined;
  /** Whether the version report reached the control plane ("EG_CODE: sentence" when it did not). */
  reported?: true | string;
};

/**
 * Ask the director what this device runs and install it. A refusal (attestation not passing, a
 * metadata attack, a mismatch of director and repository) installs nothing and is the outcome's
 * error; an install that ran, successful or not, is reported to the control plane.
 */
export function updateFromDirector(o: DirectorUpdateOptions): Promise<DirectorUpdateOutcome> {
  return locked(o.install, () => updateFromDirectorLocked(o));
}

async function updateFromDirectorLocked(o: DirectorUpdateOptions): Promise<DirectorUpdateOutcome> {
  const ctx = o.install;
  let assigned: AssignedRelease | null;
  let deviceDir: string | undefined;
  try {
    await recover(ctx, o.director.metadataDir);
    const policy = await devicePolicy(ctx);
    deviceDir = policy.deviceDir;
    assigned = await fetchAssignedRelease({
      ...o.director,
      publisherKeys: ctx.publicKeys,
      minimumVersion: 0,
      floorOf: (kind) => ctx.floor.read(kind),
      ...(policy.pcrPolicyKey ? { pcrPolicyKey: policy.pcrPolicyKey } : {}),
    });
  } catch (e) {
    return refusedOutcome(e, ctx);
  }
  if (!assigned)
    return {
      ok: true,
      nothingAssigned: true,
      at: new Date().toISOString(),
      floor: { provider: ctx.floor.provider, value: await ctx.floor.read('model') },
    };
  stepBoundary('fetched');
  const t = assigned.target;
  let outcome: InstallOutcome;
  try {
    outcome = await installFetched(
      {
        release: t.custom,
        packagePath: t.path,
        signaturePath: t.signaturePath,
        smokeInputPath: t.smokeInputPath,
        pcrAuthorizations: assigned.pcrAuthorizations,
        wrappedKey: assigned.wrappedKey,
      },
      ctx,
      deviceDir,
    );
  } catch (e) {
    outcome = { release: { kind: t.kind, name: t.name, version: t.version }, ...refusedOutcome(e, ctx) };
  }
  const reported = await o
    .report({
      release: t.name,
      version: t.version,
      status: outcome.ok ? 'installed' : 'failed',
      ...(outcome.error ? { detail: `${outcome.error.code}: ${outcome.error.message}`.slice(0, 2000) } : {}),
    })
    .then(
      () => true as const,
      (e: unknown) => (e instanceof EdgeguardError ? `${e.code}: ${e.message}` : String(e)),
    );
  return { ...outcome, target: t.tufPath, directorVersion: assigned.directorVersion, reported };
}
