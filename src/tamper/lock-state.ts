/**
 * The persistent lock: `tamper.lock.json` in the agent's state directory, written by the tamper
 * response (atomically and durably, mode 0600) so a restarted agent stays locked. The tamper PCR
 * also refuses the binding key, but only until the next boot resets it; this file is what keeps
 * the device locked after that. Only re-provisioning (a new binding key) removes it.
 * Layout: docs/formats.md ("Tamper lock state").
 */
import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { replacePrivateFile, syncDirectory } from '../crypto/index.ts';
import { EdgeguardError, FILE_CAPS, fsError, isEdgeguardError, readBoundedText } from '../errors/index.ts';

export const LOCK_STATE_FILE = 'tamper.lock.json';
export const LOCK_STATE_TYPE = 'edgeguard-tamper-lock';

const hex = z.string().regex(/^[0-9a-f]{40,128}$/);

export const lockStateSchema = z.strictObject({
  type: z.literal(LOCK_STATE_TYPE),
  version: z.literal(1),
  lockedAt: z.iso.datetime({ offset: false, precision: 3 }),
  sensor: z.string().min(1).max(64),
  kind: z.enum(['gpio', 'accelerometer', 'intrusion', 'command']),
  cause: z.enum(['tampered', 'unreadable']),
  detail: z.string().max(2000),
  /** RFC 7638 thumbprint of the binding key in use when the device was locked. */
  bindingKey: z.string().regex(/^[A-Za-z0-9_-]{43}$/),
  /** The extend the response made (or tried to make). */
  pcr: z.strictObject({ index: z.number().int().min(0).max(23), bank: z.string().max(16), digest: hex }),
});

export type LockState = z.infer<typeof lockStateSchema>;

export function lockStatePath(stateDir: string): string {
  return join(stateDir, LOCK_STATE_FILE);
}

export async function writeLockState(stateDir: string, state: LockState): Promise<void> {
  await replacePrivateFile(lockStatePath(stateDir), JSON.stringify(lockStateSchema.parse(state), null, 2) + '\n');
}

/** The lock state, or undefined when the device is not locked. A damaged file is EG_LOCKED: it cannot prove "unlocked". */
export async function readLockState(stateDir: string): Promise<LockState | undefined> {
  const path = lockStatePath(stateDir);
  let text: string;
  try {
    text = await readBoundedText(path, FILE_CAPS.config, 'read the lock state');
  } catch (e) {
    if (isEdgeguardError(e, 'EG_NOT_FOUND')) return undefined;
    throw new EdgeguardError(
      'EG_LOCKED',
      `the device is treated as locked, its lock state cannot be read: ${(e as Error).message}`,
      { cause: e },
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    value = undefined;
  }
  const r = lockStateSchema.safeParse(value);
  if (!r.success)
    throw new EdgeguardError(
      'EG_LOCKED',
      `${path} is damaged, so the device is treated as locked; re-provision it with \`edgeguard device reprovision\`.`,
      { details: { lockState: 'damaged' } },
    );
  return r.data;
}

/** For the agent's start-up: true when a lock state file exists at all (damaged or not: fail closed). */
export async function isLocked(stateDir: string): Promise<boolean> {
  try {
    return (await readLockState(stateDir)) !== undefined;
  } catch {
    return true;
  }
}

/** The error the agent answers with while locked (HTTP 503, CLI exit 9). */
export function lockedError(state: LockState | undefined): EdgeguardError {
  const what = state ? `${state.sensor} (${state.kind}) reported tampering at ${state.lockedAt}` : 'its lock state';
  return new EdgeguardError(
    'EG_LOCKED',
    `this device is locked: ${what}; it comes back only through \`edgeguard device reprovision\`.`,
    { details: state ? { sensor: state.sensor, lockedAt: state.lockedAt } : {} },
  );
}

/**
 * Called by re-provisioning once it has made a new binding key: removes the lock. Refused while
 * the device still has the binding key it was locked with (its wrapped keys were exposed to
 * whoever opened the case). A damaged lock file cannot name that key; re-provisioning removes it
 * all the same, since it makes a new key whatever the old one was.
 */
export async function clearTamperLock(stateDir: string, newBindingKey: string): Promise<void> {
  const path = lockStatePath(stateDir);
  const state = await readLockState(stateDir).catch((e: unknown) => {
    if (isEdgeguardError(e, 'EG_LOCKED') && e.details?.lockState === 'damaged') return 'damaged' as const;
    throw e;
  });
  if (state === undefined) return;
  if (state !== 'damaged' && state.bindingKey === newBindingKey)
    throw new EdgeguardError(
      'EG_LOCKED',
      'the device still has the binding key it was locked with; re-provision it (a new binding key) before unlocking.',
    );
  try {
    await unlink(path);
    await syncDirectory(stateDir);
  } catch (e) {
    throw fsError(e, path, 'remove the tamper lock');
  }
}
