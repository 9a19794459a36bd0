/**
 * Durable replacement of a public file (TUF metadata): a temporary file beside it, fsync, rename,
 * then fsync of the directory, so a crash leaves the old file or the new one, never a truncated
 * one. Synchronous because tuf-js persists its trusted metadata from synchronous code.
 */
import { closeSync, fsyncSync, openSync, readdirSync, renameSync, rmSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fsError } from '../errors/index.ts';

export function replaceFileDurablySync(path: string, contents: string | Uint8Array): void {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    const fd = openSync(tmp, 'wx', 0o644);
    try {
      writeSync(fd, typeof contents === 'string' ? Buffer.from(contents, 'utf8') : contents);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
    syncDirectorySync(dirname(path));
  } catch (e) {
    removeQuietly(tmp);
    throw fsError(e, path, 'write');
  }
}

/** Best effort: the write's own error is the one worth reporting. */
function removeQuietly(path: string): void {
  try {
    rmSync(path, { force: true });
  } catch {
    // nothing was created, or the directory cannot be changed: nothing to clean
  }
}

function syncDirectorySync(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Start-up: the temporary files of replacements a crash interrupted (the files they were to replace are intact). */
export function removeInterruptedReplacementsSync(dir: string): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const n of names) if (/\.tmp-\d+-[0-9a-f]{8}$/.test(n)) removeQuietly(join(dir, n));
}
