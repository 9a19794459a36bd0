import type { FileHandle } from 'node:fs/promises';
import { EdgeguardError, fsError } from '../errors/index.ts';

/**
 * Read exactly `length` bytes at `position` into the start of `buf`. Returns the count read, which
 * is less than `length` only at end of file.
 */
export async function readUpTo(
  fh: FileHandle,
  buf: Buffer,
  length: number,
  position: number,
  path: string,
): Promise<number> {
  let done = 0;
  while (done < length) {
    let r;
    try {
      r = await fh.read(buf, done, length - done, position + done);
    } catch (e) {
      throw fsError(e, path, 'read');
    }
    if (r.bytesRead === 0) break;
    done += r.bytesRead;
  }
  return done;
}

export async function readFully(
  fh: FileHandle,
  buf: Buffer,
  length: number,
  position: number,
  path: string,
): Promise<void> {
  const n = await readUpTo(fh, buf, length, position, path);
  if (n !== length) throw new EdgeguardError('EG_IO', `${path} became shorter while it was being read.`);
}
