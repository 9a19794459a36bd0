/**
 * Reading a whole file with a cap. Files from outside (signatures, keys, certificates, configs)
 * are read whole to be parsed; without a cap a file of any size is buffered before the parser can
 * refuse it. The size is checked before reading and the read stops one byte past the cap, so a
 * file that grows while read, or reports size 0 (/proc, devices), is bounded too.
 */
import { closeSync, fstatSync, openSync, readSync, type Stats } from 'node:fs';
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
    const plan = boundedRead(path, maxBytes, await handle.stat());
    let step = plan.next();
    while (!step.done) {
      const { buffer, offset } = step.value;
      step = plan.next((await handle.read(buffer, offset, buffer.length - offset, null)).bytesRead);
    }
    return step.value;
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

/**
 * readBounded for the places that read synchronously (configuration read while a command or a
 * server is being built): the same checks, the same errors.
 */
export function readBoundedSync(path: string, maxBytes: number, action: string): Buffer {
  let fd;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw fsError(e, path, action);
  }
  try {
    const plan = boundedRead(path, maxBytes, fstatSync(fd));
    let step = plan.next();
    while (!step.done) {
      const { buffer, offset } = step.value;
      step = plan.next(readSync(fd, buffer, offset, buffer.length - offset, null));
    }
    return step.value;
  } catch (e) {
    throw fsError(e, path, action);
  } finally {
    closeSync(fd);
  }
}

/** readBoundedSync as UTF-8 text. */
export function readBoundedTextSync(path: string, maxBytes: number, action: string): string {
  return readBoundedSync(path, maxBytes, action).toString('utf8');
}

/**
 * The reads both readers make, apart from the I/O: each step yields where the next read goes and
 * is sent how many bytes it brought (0 at the end); the result is the contents.
 */
function* boundedRead(
  path: string,
  maxBytes: number,
  stat: Stats,
): Generator<{ buffer: Buffer; offset: number }, Buffer, number> {
  if (stat.isDirectory()) throw new EdgeguardError('EG_IO', `${path} is a directory; name a file.`);
  if (stat.size > maxBytes) throw tooLarge(path, maxBytes, stat.size);
  const buffer = Buffer.alloc(Math.min(maxBytes + 1, Math.max(stat.size, 64 * 1024)));
  let length = 0;
  for (;;) {
    if (length === buffer.length) throw tooLarge(path, maxBytes);
    const bytesRead = yield { buffer, offset: length };
    if (bytesRead === 0) break;
    length += bytesRead;
    if (length > maxBytes) throw tooLarge(path, maxBytes);
  }
  return buffer.subarray(0, length);
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
