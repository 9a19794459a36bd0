/**
 * `edgeguard device reprovision --dir DEV`: the only way back for a device the tamper response
 * locked (docs/threat-model.md, "Physical tamper"). Whoever opened the case may have read the old
 * binding key's wraps, so the device gets a new binding key and a new enrollment:
 *
 *   1. with a TPM, the tamper PCR must be back at its reset value (the device was rebooted):
 *      a key made now would bind to the extended value and stop working at the next boot;
 *   2. the old key store and enrollment (device.json, binding blobs, fleet/ with its journal) move
 *      to DEV/retired/TIME/, kept as evidence;
 *   3. `device init` makes a new binding key (same provider, TCTI, PCR selection and PCR policy key);
 *   4. with a TPM, the anti-rollback floor moves to the new key (TpmFloor.transferFrom: the same
 *      baselines, B defined again with the new key's policy), so no floor is lowered or lost;
 *   5. clearTamperLock removes tamper.lock.json (it refuses while the binding key is the old one).
 *
 * The operator then wraps the content keys to the new binding.pub, removes the tampered device on
 * the control plane, and the device enrolls again, which needs approval again.
 */
import { mkdir, readFile, readdir, rename } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { EdgeguardError, fsError } from '../../errors/index.ts';
import {
  DEVICE_FILES,
  TpmKeyStore,
  initDevice,
  openDeviceKeyStore,
  readDeviceFile,
  type DeviceFile,
} from '../../keystore/index.ts';
import { DEFAULT_FLOOR_NV_INDEX, TpmFloor, type TpmFloorState } from '../../release/index.ts';
import { LOCK_STATE_FILE, clearTamperLock, isLocked, readLockState, tamperConfigSchema } from '../../tamper/index.ts';
import { TpmClient } from '../../tpm/index.ts';

export const RETIRED_DIR = 'retired';

export interface ReprovisionResult {
  dir: string;
  retiredTo: string;
  previousBindingKey: string;
  device: DeviceFile;
  wasLocked: boolean;
  /** The TPM floor, moved to the new binding key; or why it could not be (updates stay refused). */
  floor?: { moved: true; state: TpmFloorState } | { moved: false; code: string; message: string };
}

/** Refuse while the tamper PCR still holds the response's extend (it resets only at boot). */
async function requireTamperPcrReset(tcti: string, pcr: { index: number; bank: string }): Promise<void> {
  const values = await new TpmClient({ tcti }).readPcrs(`${pcr.bank}:${pcr.index}`);
  const value = values[pcr.bank]?.[pcr.index];
  if (!value || value.some((b) => b !== 0))
    throw new EdgeguardError(
      'EG_LOCKED',
      `PCR ${pcr.index} (${pcr.bank}) still holds the tamper extend; reboot the device, then re-provision (a binding key made now would stop working at the next boot).`,
    );
}

async function retireOldFiles(dir: string): Promise<string> {
  const target = join(dir, RETIRED_DIR, new Date().toISOString().replace(/[:.]/g, '-'));
  try {
    await mkdir(target, { recursive: true, mode: 0o700 });
    for (const name of await readdir(dir)) {
      if (name === LOCK_STATE_FILE || name === RETIRED_DIR) continue;
      await rename(join(dir, name), join(target, name));
    }
  } catch (e) {
    throw fsError(e, dir, 'move the old key store aside');
  }
  return target;
}

export async function reprovisionDevice(o: {
  dir: string;
  tcti?: string | undefined;
  floorIndex?: number | undefined;
}): Promise<ReprovisionResult> {
  const dir = resolve(o.dir);
  const old = await readDeviceFile(dir);
  const wasLocked = await isLocked(dir);
  const lock = await readLockState(dir).catch(() => undefined);
  const tcti = o.tcti ?? old.tpm?.tcti;
  if (old.provider === 'tpm') await requireTamperPcrReset(tcti!, lock?.pcr ?? tamperConfigSchema.parse({}).pcr);
  // The operator's PCR policy key carries over: authorizations signed for the fleet keep applying.
  const pcrPolicyKey =
    old.tpm?.policyKind === 'pcr-or-authorized'
      ? await readFile(join(dir, DEVICE_FILES.pcrPolicyKey), 'utf8').catch((e) => {
          throw fsError(e, join(dir, DEVICE_FILES.pcrPolicyKey), 'read');
        })
      : undefined;
  const previous = old.provider === 'tpm' ? await openDeviceKeyStore(dir, { tcti: tcti! }) : undefined;
  const retiredTo = await retireOldFiles(dir);
  const made = await initDevice({
    dir,
    ...(old.provider === 'tpm' ? { tcti: tcti!, pcrs: old.tpm!.pcrs } : {}),
    ...(pcrPolicyKey !== undefined ? { pcrPolicyKey } : {}),
  });
  let floor: ReprovisionResult['floor'];
  if (previous instanceof TpmKeyStore && made.store instanceof TpmKeyStore) {
    try {
      const state = await new TpmFloor(made.store, o.floorIndex ?? DEFAULT_FLOOR_NV_INDEX).transferFrom(previous);
      floor = { moved: true, state };
    } catch (e) {
      if (!(e instanceof EdgeguardError && e.code.startsWith('EG_FLOOR_'))) throw e;
      floor = { moved: false, code: e.code, message: e.message };
    }
  }
  await clearTamperLock(dir, made.device.bindingKey);
  return {
    dir,
    retiredTo,
    previousBindingKey: old.bindingKey,
    device: made.device,
    wasLocked,
    ...(floor ? { floor } : {}),
  };
}
