/**
 * One installer at a time per data directory, across processes (docs/formats.md, "Install lock"):
 * a systemd timer's `edgeguard agent update` and a serving agent's director poller must not both
 * stage, switch slots, refresh the trusted metadata or raise the anti-rollback floor.
 *
 *   DIR/install.lock                 the holder: pid, host, boot, the process's start time, nonce
 *   DIR/install.lock.claim-ID        a takeover of the stale lock ID in progress (itself such a lock)
 *   DIR/install.lock*.tmp-PID-HEX    a record being written
 *
 * Taking it: the record is written whole to a temp file (0600, fsync) and hard-linked to the lock
 * path; link(2) fails with EEXIST exactly like open(O_CREAT|O_EXCL), and the lock appears complete
 * or not at all. A lock whose holder is gone is stale: another boot, kill(pid, 0) says ESRCH, or
 * the pid now belongs to a process with another start time (/proc/PID/stat field 22: PID reuse).
 * A lock that does not parse is stale once older than UNPARSABLE_LOCK_GRACE_MS (no live holder
 * writes one: only a damaged disk or a foreign writer). A holder on another host (another hostname
 * and not this boot's boot id) cannot be checked and counts as live.
 *
 * Taking over a stale lock: the taker first takes the claim named after that stale lock's bytes
 * (a lock of its own, by the same rules, so a taker that dies holding it is itself taken over),
 * checks the lock is still the stale one, and renames its record over it. Two takers of one stale
 * lock compete for one claim: exactly one renames. Within a process the lock is held per async
 * context, so the install path may nest (updateDevice -> installRelease) while a concurrent second
 * install in the same process is refused like one in another process.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { createHash, randomBytes } from 'node:crypto';
import {
  closeSync,
  fsyncSync,
  linkSync,
  fstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  readSync,
  renameSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { EdgeguardError, fsError } from '../errors/index.ts';

export const INSTALL_LOCK_FILE = 'install.lock';
/** An unparsable lock younger than this is left alone (counted as busy); older, it is stale. */
export const UNPARSABLE_LOCK_GRACE_MS = 5000;
/** A lock record is a few hundred bytes; anything longer is not one. */
export const MAX_INSTALL_LOCK_BYTES = 1024;
/** Claims of claims: each level needs a taker to die mid-takeover, so a few suffice. */
const MAX_TAKEOVER_DEPTH = 3;
const LOCK_TYPE = 'edgeguard-install-lock';

const holderSchema = z.strictObject({
  type: z.literal(LOCK_TYPE),
  version: z.literal(1),
  pid: z
    .number()
    .int()
    .min(1)
    .max(2 ** 22),
  hostname: z.string().max(255),
  /** /proc/sys/kernel/random/boot_id; null where there is none. */
  bootId: z
    .string()
    .regex(/^[0-9a-f-]{36}$/)
    .nullable(),
  /** Field 22 of /proc/PID/stat (clock ticks after boot), decimal; null where there is no /proc. */
  processStart: z
    .string()
    .regex(/^\d{1,20}$/)
    .nullable(),
  startedAt: z.iso.datetime(),
  nonce: z.string().regex(/^[0-9a-f]{32}$/),
});
export type InstallLockHolder = z.infer<typeof holderSchema>;

/** The holder a lock file names, or undefined for anything that is not exactly a lock record. */
export function parseInstallLock(bytes: Uint8Array): InstallLockHolder | undefined {
  if (bytes.length > MAX_INSTALL_LOCK_BYTES) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    return undefined;
  }
  const r = holderSchema.safeParse(json);
  return r.success ? r.data : undefined;
}

function readOptional(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** Field 22 (starttime) of a /proc/PID/stat line; undefined when the line has none. */
export function startTimeFromStat(stat: string): string | undefined {
  // Field 2 (comm) is in parentheses and may hold spaces and ')': fields 3.. follow the last ')'.
  const close = stat.lastIndexOf(')');
  if (close < 0) return undefined;
  const start = stat
    .slice(close + 1)
    .trim()
    .split(' ')[22 - 3];
  return start !== undefined && /^\d{1,20}$/.test(start) ? start : undefined;
}

/** The start time of process `pid`; undefined when there is no such process or no /proc. */
export function processStartTime(pid: number): string | undefined {
  const stat = readOptional(`/proc/${pid}/stat`);
  return stat === undefined ? undefined : startTimeFromStat(stat);
}

function currentBootId(): string | null {
  return readOptional('/proc/sys/kernel/random/boot_id')?.trim() ?? null;
}

function holderRecord(): InstallLockHolder {
  return {
    type: LOCK_TYPE,
    version: 1,
    pid: process.pid,
    hostname: hostname().slice(0, 255),
    bootId: currentBootId(),
    processStart: processStartTime(process.pid) ?? null,
    startedAt: new Date().toISOString(),
    nonce: randomBytes(16).toString('hex'),
  };
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists under another user. Anything but ESRCH counts as alive (fail closed).
    return (e as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/** What a lock file says: a live holder, a stale lock (and why), or one to leave alone for now. */
export type LockVerdict =
  { state: 'live'; holder: InstallLockHolder } | { state: 'stale'; why: string } | { state: 'unreadable' };

/** Judge a lock's bytes (and its age, for one that does not parse). */
export function judgeInstallLock(bytes: Uint8Array, ageMs: number): LockVerdict {
  const h = parseInstallLock(bytes);
  if (!h)
    return ageMs >= UNPARSABLE_LOCK_GRACE_MS ? { state: 'stale', why: 'it does not parse' } : { state: 'unreadable' };
  // A boot id is random per boot: the same one means this machine, now, whatever its hostname became.
  const boot = currentBootId();
  if (h.bootId === null || h.bootId !== boot) {
    if (h.hostname !== hostname().slice(0, 255)) return { state: 'live', holder: h };
    if (h.bootId && boot) return { state: 'stale', why: 'it was taken before the last boot' };
  }
  if (!processExists(h.pid)) return { state: 'stale', why: `process ${h.pid} is gone` };
  if (h.processStart !== null && processStartTime(process.pid) !== undefined) {
    const start = processStartTime(h.pid);
    if (start !== h.processStart) return { state: 'stale', why: `pid ${h.pid} now belongs to another process` };
  }
  return { state: 'live', holder: h };
}

interface Seen {
  bytes: Buffer;
  ino: number;
  ageMs: number;
}

function inspect(path: string): Seen | undefined {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw fsError(e, path, 'read the install lock');
  }
  try {
    const st = fstatSync(fd);
    // One more byte than a record may have: enough to tell it is not one.
    const bytes = Buffer.alloc(Math.min(st.size, MAX_INSTALL_LOCK_BYTES + 1));
    const n = readSync(fd, bytes, 0, bytes.length, 0);
    return { bytes: bytes.subarray(0, n), ino: st.ino, ageMs: Date.now() - st.mtimeMs };
  } finally {
    closeSync(fd);
  }
}

function writeRecord(path: string, record: InstallLockHolder): string {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    const fd = openSync(tmp, 'wx', 0o600);
    try {
      writeSync(fd, JSON.stringify(record) + '\n');
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch (e) {
    rmSync(tmp, { force: true });
    throw fsError(e, tmp, 'write the install lock');
  }
  return tmp;
}

/** link(2): creates `path` only if nothing is there. */
function linkExclusive(from: string, path: string): boolean {
  try {
    linkSync(from, path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw fsError(e, path, 'take the install lock');
  }
}

type Attempt = { held: true } | { held: false; verdict: LockVerdict | { state: 'contended' } };

function claimPath(path: string, seen: Seen): string {
  const id = createHash('sha256').update(seen.bytes).update(String(seen.ino)).digest('hex').slice(0, 16);
  return `${path}.claim-${id}`;
}

/** Take `path` for `record`, taking over a stale holder; never waits. */
function tryTake(path: string, record: InstallLockHolder, depth: number): Attempt {
  const mine = writeRecord(path, record);
  try {
    for (let round = 0; round < 3; round++) {
      if (linkExclusive(mine, path)) return { held: true };
      const seen = inspect(path);
      if (!seen) continue; // released between the link and the read
      const verdict = judgeInstallLock(seen.bytes, seen.ageMs);
      if (verdict.state !== 'stale' || depth >= MAX_TAKEOVER_DEPTH) return { held: false, verdict };
      const claim = claimPath(path, seen);
      if (!tryTake(claim, record, depth + 1).held) return { held: false, verdict: { state: 'contended' } };
      try {
        const now = inspect(path);
        // Another taker finished first: look again.
        if (!now || now.ino !== seen.ino || !now.bytes.equals(seen.bytes)) continue;
        renameSync(mine, path);
        return { held: true };
      } finally {
        releaseIfOurs(claim, record);
      }
    }
    return { held: false, verdict: { state: 'contended' } };
  } finally {
    rmSync(mine, { force: true });
  }
}

function releaseIfOurs(path: string, record: InstallLockHolder): void {
  const seen = inspect(path);
  if (seen && parseInstallLock(seen.bytes)?.nonce === record.nonce) rmSync(path, { force: true });
}

/** Left by takers and writers that died: temp records of gone processes, stale claims. */
function removeLeftovers(dir: string): void {
  for (const name of readdirSync(dir)) {
    if (!name.startsWith(`${INSTALL_LOCK_FILE}.`)) continue;
    const path = join(dir, name);
    const tmp = /\.tmp-(\d+)-[0-9a-f]{8}$/.exec(name);
    if (tmp) {
      if (!processExists(Number(tmp[1]))) rmSync(path, { force: true });
      continue;
    }
    const seen = name.includes('.claim-') ? inspect(path) : undefined;
    if (seen && judgeInstallLock(seen.bytes, seen.ageMs).state === 'stale') rmSync(path, { force: true });
  }
}

function busy(path: string, verdict: LockVerdict | { state: 'contended' }): EdgeguardError {
  const details = { lock: path, ...(verdict.state === 'live' ? { holder: verdict.holder } : {}) };
  if (verdict.state === 'live') {
    const h = verdict.holder;
    const where = h.hostname === hostname().slice(0, 255) ? `pid ${h.pid}` : `pid ${h.pid} on host ${h.hostname}`;
    const foreign =
      h.hostname === hostname().slice(0, 255)
        ? ''
        : ` (a process on another host cannot be checked: remove ${path} if nothing installs there)`;
    return new EdgeguardError(
      'EG_BUSY',
      `another install is running (${where} since ${h.startedAt}); try again later${foreign}.`,
      { details },
    );
  }
  if (verdict.state === 'stale')
    return new EdgeguardError(
      'EG_BUSY',
      `the install lock ${path} is stale (${verdict.why}) but its takeover kept failing; remove ${path} and its .claim- files, then try again.`,
      { details },
    );
  return new EdgeguardError(
    'EG_BUSY',
    `another install is taking the lock ${path} right now (or the file is damaged: unparsable locks count as stale after ${UNPARSABLE_LOCK_GRACE_MS / 1000} s); try again later.`,
    { details },
  );
}

export interface InstallLock {
  readonly path: string;
  readonly holder: InstallLockHolder;
  /** Remove the lock if it is still ours. */
  release(): void;
}

export interface InstallLockOptions {
  /** How long to wait for a live holder before refusing with EG_BUSY (default 0: refuse at once). */
  waitMs?: number | undefined;
}

export function installLockPath(dataDir: string): string {
  return resolve(dataDir, INSTALL_LOCK_FILE);
}

/** Take the data directory's install lock, waiting up to `waitMs` for a live holder; EG_BUSY when it stays held. */
export async function acquireInstallLock(dataDir: string, o: InstallLockOptions = {}): Promise<InstallLock> {
  try {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  } catch (e) {
    throw fsError(e, dataDir, 'create the data directory');
  }
  const path = installLockPath(dataDir);
  const deadline = Date.now() + Math.max(0, o.waitMs ?? 0);
  for (let pause = 50; ; pause = Math.min(pause * 2, 1000)) {
    const record = holderRecord();
    const attempt = tryTake(path, record, 0);
    if (attempt.held) {
      removeLeftovers(dataDir);
      return { path, holder: record, release: () => releaseIfOurs(path, record) };
    }
    const left = deadline - Date.now();
    if (left <= 0) throw busy(path, attempt.verdict);
    await sleep(Math.min(pause, left));
  }
}

/** The locks the current async context holds (so an install may call recovery and the installer under one lock). */
const held = new AsyncLocalStorage<ReadonlySet<string>>();

/** Run `fn` holding the data directory's install lock (re-entered, not re-taken, by what `fn` calls). */
export async function withInstallLock<T>(
  dataDir: string,
  fn: () => Promise<T>,
  o: InstallLockOptions = {},
): Promise<T> {
  const path = installLockPath(dataDir);
  const outer = held.getStore();
  if (outer?.has(path)) return fn();
  const lock = await acquireInstallLock(dataDir, o);
  try {
    return await held.run(new Set([...(outer ?? []), path]), fn);
  } finally {
    lock.release();
  }
}
