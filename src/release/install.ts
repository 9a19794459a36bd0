/**
 * Installing a verified release on the device. The input is an interface, not a download: a
 * package that already passed TUF, the OMS signature and the header check (fetchRelease, or the
 * director's fetch), its signed release facts, optionally its own wrapped content key and smoke
 * test. Kind model goes to the A/B slots (slots.ts):
 *
 *   floor check -> stage (files, fsync, manifest) -> place (rename into the inactive slot)
 *   -> trial load (unwrap in memory, ORT session, smoke test) -> switch (pointer rename)
 *   -> commit (raise the anti-rollback floor)
 *
 * All of it, and the start-up recovery, runs under the data directory's install lock
 * (install-lock.ts): one installer at a time across processes. Any failure before the switch
 * leaves the pointer where it was; the half-installed slot is removed. Kinds firmware and agent go to the configured installer command (handoff.ts). Each
 * install ends in an InstallOutcome (recorded for the agent's journal, printed by the CLI).
 */
import { copyFile, mkdir, open, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { createHash, type KeyObject } from 'node:crypto';
import { EdgeguardError, fsError, isEdgeguardError } from '../errors/index.ts';
import type { ContentKeySource } from '../keystore/index.ts';
import type { AntiRollbackFloor } from './floor.ts';
import { handOff } from './handoff.ts';
import { withInstallLock } from './install-lock.ts';
import { stepBoundary } from './install-steps.ts';
import { releaseRefused } from './refusal.ts';
import type { ReleaseKind } from './release-target.ts';
import {
  SLOT_FILES,
  createStaging,
  otherSlot,
  placeStaging,
  readSlots,
  recoverSlots,
  sealStaging,
  slotsDir,
  verifySlot,
  writePointer,
  writeStagedFile,
  type SlotManifest,
  type SlotName,
  type SlotState,
  type VerifiedSlot,
} from './slots.ts';
import { trialLoad, type SmokeTest } from './trial-load.ts';

/** A release whose package already verified: what the installer consumes, however it was fetched. */
export interface VerifiedRelease {
  kind: ReleaseKind;
  name: string;
  version: number;
  /** The floor this release sets once installed. */
  minVersion: number;
  /** SHA-256 of the package header the signed metadata names. */
  headerSha256: string;
  packagePath: string;
  signaturePath: string;
  /** The content key wrapped to this device (a wrapped key file's text); default: the configured one. */
  wrappedKey?: string | undefined;
  smokeTest?: SmokeTest | undefined;
}

export interface InstallContext {
  /** The agent's data directory: releases/ (slots), anti-rollback.json, hand-off directories. */
  dataDir: string;
  publicKeys: KeyObject[];
  /** The configured content key: a wrapped key and the device key store, or a key file (development). */
  contentKey: ContentKeySource;
  floor: AntiRollbackFloor;
  executionProviders?: readonly string[] | undefined;
  /** Installer argv per kind (agent.yaml update.firmware.command, update.agent.command). */
  installers?: Partial<Record<'firmware' | 'agent', readonly string[]>> | undefined;
  /** How long to wait while another install holds the data directory's lock (default 0: EG_BUSY at once). */
  lockWaitMs?: number | undefined;
}

export interface InstallOutcome {
  ok: boolean;
  at: string;
  /** Absent when the release was refused before its metadata could be read. */
  release?: { kind: ReleaseKind; name: string; version: number } | undefined;
  /** model: the slot serving now; absent for firmware and agent. */
  slot?: SlotName | undefined;
  /** What served before (model), when anything did. */
  previous?: { name: string; version: number } | undefined;
  /** Already the active release: nothing was written. */
  unchanged?: boolean;
  smokeLabel?: string | undefined;
  /** Installed, but the floor could not be raised yet (a TPM error): it is raised at the next start. */
  floorPending?: string | undefined;
  floor: { provider: 'tpm' | 'software'; value: number };
  error?: { code: string; message: string; reason?: string } | undefined;
}

type RecoveryContext = Pick<InstallContext, 'dataDir' | 'floor' | 'lockWaitMs'>;

/** Only a slot swapped outside the installer can be below the floor: fail closed. */
function refuseBelowFloor(state: SlotState, floor: number): void {
  const r = state.active!.manifest.release;
  if (r.version < floor)
    throw releaseRefused('below-minimum', `the active slot holds ${r.name} ${r.version} < floor ${floor}`);
}

/**
 * Start-up, under the install lock: recover the slots and finish a commit a crash interrupted
 * (the floor raise is idempotent).
 */
export async function recoverInstall(ctx: RecoveryContext): Promise<SlotState> {
  return withInstallLock(
    ctx.dataDir,
    async () => {
      const state = await recoverSlots(ctx.dataDir);
      const r = state.active?.manifest.release;
      if (r) refuseBelowFloor(state, await ctx.floor.raise(r.kind, r.minVersion));
      return state;
    },
    { waitMs: ctx.lockWaitMs },
  );
}

/**
 * What a serving process serves: the recovered slots when no install runs; while one does (it
 * holds the lock), or when this process may not write the data directory (EG_IO: a serving agent
 * with read-only access beside a privileged installer), the active slot as the pointer names it,
 * checked whole and against the floor, with nothing removed (at every moment of an install the
 * pointer names a complete slot).
 */
export async function servedSlots(ctx: Pick<InstallContext, 'dataDir' | 'floor'>): Promise<SlotState> {
  try {
    return await recoverInstall({ ...ctx, lockWaitMs: 0 });
  } catch (e) {
    if (!isEdgeguardError(e, 'EG_BUSY') && !isEdgeguardError(e, 'EG_IO')) throw e;
  }
  const state = await readSlots(ctx.dataDir);
  if (state.active) refuseBelowFloor(state, await ctx.floor.read(state.active.manifest.release.kind));
  return state;
}

/** The content key source for a slot: its own wrapped key through the device store, else the configured one. */
export function slotContentKey(slot: VerifiedSlot, configured: ContentKeySource): ContentKeySource {
  if (slot.wrappedKeyPath && 'device' in configured) return { ...configured, wrapped: slot.wrappedKeyPath };
  return configured;
}

async function copyStagedFile(dir: string, name: string, source: string): Promise<void> {
  const dest = join(dir, name);
  try {
    await copyFile(source, dest);
    const fh = await open(dest, 'r+');
    await fh.sync().finally(() => fh.close());
  } catch (e) {
    throw fsError(e, dest, 'copy the release into its slot');
  }
}

/** The wrapped key for the slot: the release's own, else a copy of the configured one (a slot is self-contained). */
async function wrappedKeyBytes(r: VerifiedRelease, ctx: InstallContext): Promise<Buffer | undefined> {
  if (!('device' in ctx.contentKey)) return undefined;
  if (r.wrappedKey !== undefined) return Buffer.from(r.wrappedKey, 'utf8');
  return readFile(ctx.contentKey.wrapped).catch((e: unknown) => {
    throw fsError(e, (ctx.contentKey as { wrapped: string }).wrapped, 'read the wrapped key');
  });
}

async function stage(r: VerifiedRelease, ctx: InstallContext, target: SlotName): Promise<{ dir: string; sha: string }> {
  const dir = await createStaging(ctx.dataDir, target);
  await copyStagedFile(dir, SLOT_FILES.package, r.packagePath);
  await copyStagedFile(dir, SLOT_FILES.signature, r.signaturePath);
  const wrapped = await wrappedKeyBytes(r, ctx);
  if (wrapped) await writeStagedFile(dir, SLOT_FILES.wrappedKey, wrapped);
  // The manifest's digests are computed from what landed on disk, not from what was meant to.
  const files: SlotManifest['files'] = {};
  for (const name of [SLOT_FILES.package, SLOT_FILES.signature, ...(wrapped ? [SLOT_FILES.wrappedKey] : [])]) {
    const { sha256, length } = await hashFile(join(dir, name));
    files[name as keyof SlotManifest['files']] = { sha256, length };
  }
  const manifest: SlotManifest = {
    type: 'edgeguard-slot',
    version: 1,
    release: { kind: r.kind, name: r.name, version: r.version, minVersion: r.minVersion },
    headerSha256: r.headerSha256,
    files,
    installedAt: new Date().toISOString(),
  };
  return { dir, sha: await sealStaging(dir, manifest) };
}

async function hashFile(path: string): Promise<{ sha256: string; length: number }> {
  const hash = createHash('sha256');
  let length = 0;
  const fh = await open(path, 'r');
  try {
    for await (const chunk of fh.createReadStream() as AsyncIterable<Buffer>) {
      hash.update(chunk);
      length += chunk.length;
    }
  } finally {
    await fh.close().catch(() => undefined);
  }
  return { sha256: hash.digest('hex'), length };
}

async function installModel(r: VerifiedRelease, ctx: InstallContext, out: InstallOutcome): Promise<void> {
  const state = await recoverInstall(ctx);
  if (state.active)
    out.previous = { name: state.active.manifest.release.name, version: state.active.manifest.release.version };
  if (state.active?.manifest.headerSha256 === r.headerSha256) {
    out.unchanged = true;
    out.slot = state.active.slot;
    return;
  }
  const target = state.active ? otherSlot(state.active.slot) : 'a';
  const staged = await stage(r, ctx, target);
  stepBoundary('staged');
  await placeStaging(ctx.dataDir, staged.dir, target);
  stepBoundary('placed');
  try {
    const slot = await verifySlot(ctx.dataDir, target, staged.sha);
    const trial = await trialLoad({
      packagePath: slot.packagePath,
      publicKeys: ctx.publicKeys,
      contentKey: slotContentKey(slot, ctx.contentKey),
      expect: r,
      smokeTest: r.smokeTest,
      executionProviders: ctx.executionProviders,
    });
    out.smokeLabel = trial.smokeLabel;
  } catch (e) {
    // The old slot still serves; the failed one goes.
    await rm(join(slotsDir(ctx.dataDir), target), { recursive: true, force: true });
    throw e;
  }
  stepBoundary('trial-loaded');
  writePointer(ctx.dataDir, {
    type: 'edgeguard-active-slot',
    version: 1,
    active: { slot: target, manifestSha256: staged.sha },
    ...(state.active ? { previous: { slot: state.active.slot, manifestSha256: state.active.manifestSha256 } } : {}),
  });
  out.slot = target;
  stepBoundary('switched');
}

async function installByHandoff(r: VerifiedRelease, ctx: InstallContext): Promise<void> {
  const kind = r.kind as 'firmware' | 'agent';
  const command = ctx.installers?.[kind];
  if (!command?.length)
    throw new EdgeguardError(
      'EG_CONFIG',
      `a ${kind} release needs an installer command: set update.${kind}.command in agent.yaml (e.g. ["rauc", "install", "{path}"]).`,
    );
  await mkdir(ctx.dataDir, { recursive: true, mode: 0o700 });
  await handOff({
    packagePath: r.packagePath,
    signaturePath: r.signaturePath,
    publicKeys: ctx.publicKeys,
    contentKey: ctx.contentKey,
    expect: r,
    command,
    workDir: ctx.dataDir,
  });
  stepBoundary('handed-off');
}

/** Raise the floor after the switch; a failure here leaves the new release installed (recoverInstall retries). */
async function commit(r: VerifiedRelease, ctx: InstallContext, out: InstallOutcome): Promise<void> {
  try {
    out.floor.value = await ctx.floor.raise(r.kind, r.minVersion);
    stepBoundary('committed');
  } catch (e) {
    if (!(e instanceof EdgeguardError)) throw e;
    out.floorPending = `${e.code}: ${e.message}`;
  }
}

/** Install one verified release under the install lock; never throws for a refused, busy or failed install, the outcome says it. */
export async function installRelease(r: VerifiedRelease, ctx: InstallContext): Promise<InstallOutcome> {
  const out: InstallOutcome = {
    ok: false,
    at: new Date().toISOString(),
    release: { kind: r.kind, name: r.name, version: r.version },
    floor: { provider: ctx.floor.provider, value: 0 },
  };
  try {
    await withInstallLock(
      ctx.dataDir,
      async () => {
        const floor = await ctx.floor.read(r.kind);
        out.floor.value = floor;
        if (r.version < floor) throw releaseRefused('below-minimum', `${r.name} ${r.version} < minimum ${floor}`);
        if (r.kind === 'model') await installModel(r, ctx, out);
        else await installByHandoff(r, ctx);
        out.ok = true;
        if (!out.unchanged) await commit(r, ctx, out);
      },
      { waitMs: ctx.lockWaitMs },
    );
  } catch (e) {
    if (!(e instanceof EdgeguardError)) throw e;
    out.error = {
      code: e.code,
      message: e.message,
      ...(typeof e.details?.reason === 'string' ? { reason: e.details.reason } : {}),
    };
  }
  return out;
}
