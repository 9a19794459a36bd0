/**
 * The data directory holds what the control plane trusts: the CA keys, the EK roots that decide
 * which TPMs count as hardware, the auto-approve list, the audit key and the database. Like ssh
 * with ~/.ssh, the server refuses to start when any of them (or a directory above them in DATA) can
 * be written by the group or by everyone, and creates its directories 0700 whatever the umask.
 */
import { chmodSync, existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { EK_ROOTS_SUBDIR } from '../attest/index.ts';
import { LOG_KEY_FILE } from '../audit/index.ts';
import { EdgeguardError } from '../errors/index.ts';
import { PKI_SUBDIR } from '../pki/index.ts';
import { SQLITE_FILE } from '../store/index.ts';

export const AUTO_APPROVE_FILE = 'auto-approve.txt';

/** mkdir -p with mode 0700, and 0700 on the directory itself even when the umask or an old run widened it. */
export function ensurePrivateDir(path: string): void {
  mkdirSync(path, { recursive: true, mode: 0o700 });
  chmodSync(path, 0o700);
}

/** Every trust input that exists in `dataDir`, checked; throws EG_UNSAFE_PERMISSIONS for the first writable one. */
export function refuseUnsafeTrustInputs(dataDir: string): void {
  const ekRoots = join(dataDir, EK_ROOTS_SUBDIR);
  const pki = join(dataDir, PKI_SUBDIR);
  const candidates = [
    dataDir,
    ekRoots,
    ...filesIn(ekRoots),
    join(dataDir, AUTO_APPROVE_FILE),
    pki,
    ...filesIn(pki),
    join(dataDir, LOG_KEY_FILE),
    join(dataDir, SQLITE_FILE),
  ];
  for (const path of candidates) if (existsSync(path)) refuseWritableByOthers(path);
}

/** The EK roots directory and its files (re-checked on every re-read). */
export function refuseUnsafeEkRoots(ekRoots: string): void {
  for (const path of [ekRoots, ...filesIn(ekRoots)]) if (existsSync(path)) refuseWritableByOthers(path);
}

/** Files of the server's own making get 0600 even under umask 000 (the SQLite database is created 0666 &~umask). */
export function restrictToOwner(path: string): void {
  if (existsSync(path)) chmodSync(path, 0o600);
}

function filesIn(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir).map((name) => join(dir, name)) : [];
}

function refuseWritableByOthers(path: string): void {
  const mode = statSync(path).mode;
  if ((mode & 0o022) === 0) return;
  const who = mode & 0o002 ? 'everyone' : 'its group';
  throw new EdgeguardError(
    'EG_UNSAFE_PERMISSIONS',
    `${path} can be written by ${who} (mode ${(mode & 0o777).toString(8)}); the server trusts it, so it refuses to start. Run \`chmod go-w ${path}\` (and check who put what there).`,
    { details: { path, mode: mode & 0o777 } },
  );
}
