/** Writing key files: created with mode 0600 from the first byte, never overwritten silently. */
import { randomBytes } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fsError } from '../errors/index.ts';

export async function writePrivateFile(path: string, contents: string | Uint8Array, overwrite = false): Promise<void> {
  try {
    const fh = await open(path, overwrite ? 'w' : 'wx', 0o600);
    try {
      await fh.chmod(0o600);
      await fh.writeFile(contents);
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch (e) {
    throw fsError(e, path, 'write');
  }
}

/**
 * Replace `path` atomically and durably with a 0600 file: write a temporary file beside it, fsync,
 * rename over the old one, then fsync the directory so the rename itself survives a power cut.
 * A reader sees the old file or the new one, never half of either.
 */
export async function replacePrivateFile(path: string, contents: string | Uint8Array): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    const fh = await open(tmp, 'wx', 0o600);
    try {
      await fh.writeFile(contents);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
    await syncDirectory(dirname(path));
  } catch (e) {
    await rm(tmp, { force: true });
    throw fsError(e, path, 'write');
  }
}

/** fsync a directory, making the creation, rename or removal of an entry in it durable. */
export async function syncDirectory(dir: string): Promise<void> {
  const dh = await open(dir, 'r');
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
}
