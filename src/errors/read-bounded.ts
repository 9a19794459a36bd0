/**
 * Reading a whole file with a cap. Files from outside (signatures, keys, certificates, configs)
 * are read whole to be parsed; without a cap a file of any size is buffered before the parser can
 * refuse it. The size is checked before reading and the read stops one byte past the cap, so a
 * file that grows while read, or reports size 0 (/proc, devices), is bounded too.
 */
import { open } from 'node:fs/promises';
import { EdgeguardError, fsError } from './index.ts';

/** The contents of `path`, at most `maxBytes`; EG_FILE_TOO_LARGE past that, fs failures as fsError. */
export async function readBounded(path: string, maxBytes: number, action: string): Promise<Buffer> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (e) {
    throw fsError(e, path, action);
  }
  try {
    const stat = await handle.stat();
    if (stat.isDirectory()) throw new EdgeguardError('EG_IO', `${path} is a directory; name a file.`);
    const size = stat.size;
    if (size > maxBytes) throw tooLarge(path, maxBytes, size);
    const buf = Buffer.alloc(Math.min(maxBytes + 1, Math.max(size, 64 * 1024)));
    let length = 0;
    for (;;) {
      if (length === buf.length) throw tooLarge(path, maxBytes);
      const { bytesRead } = await handle.read(buf, length, buf.length - length, null);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length > maxBytes) throw tooLarge(path, maxBytes);
    }
    return buf.subarray(0, length);
  } catch (e) {
    throw fsError(e, path, action);
  } finally {
    await handle.close();
  }
}

/** readBounded as UTF-8 text. */
export async function readBoundedText(path: string, maxBytes: number, action: string): Promise<string> {
  return (await readBounded(path, maxBytes, action)).toString('utf8');
}

function tooLarge(path: string, maxBytes: number, size?: number): EdgeguardError {
  return new EdgeguardError(
    'EG_FILE_TOO_LARGE',
    `${path} is ${size === undefined ? 'larger than' : `${size} bytes, over`} the ${maxBytes} bytes such a file may have; check that it is the right file.`,
    { details: { path, maxBytes, ...(size === undefined ? {} : { size }) } },
  );
}

/** Caps for the kinds of small files read whole, generous for any real one. */
export const FILE_CAPS = {
  /** A PEM key, a wrapped key, a TLS key file. */
  key: 64 * 1024,
  /** A certificate or chain (PEM). */
  certificate: 1024 * 1024,
  /** A configuration, a profile, a state file. */
  config: 16 * 1024 * 1024,
} as const;
