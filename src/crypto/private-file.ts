/** Writing key files: created with mode 0600 from the first byte, never overwritten silently. */
import { open } from 'node:fs/promises';
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
