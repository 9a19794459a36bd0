/** Shared option handling for commands that read packages: keys and signatures. */
import type { KeyObject } from 'node:crypto';
import { readPublicSigningKey } from '../crypto/index.ts';
import { EdgeguardError } from '../errors/index.ts';

export async function readTrustedKeys(paths: string[] | undefined): Promise<KeyObject[]> {
  if (!paths || paths.length === 0) {
    throw new EdgeguardError(
      'EG_USAGE',
      'pass the publisher public key with --pub publisher.pub; packages are never used unverified.',
    );
  }
  return Promise.all(paths.map((p) => readPublicSigningKey(p)));
}

/** One line on who opened the chunks, so an operator sees why a device verifies slowly. */
export function engineLine(e: { engine: 'native' | 'js'; reason?: string }): string {
  if (e.engine === 'native') return 'opened by the native shard opener (OpenSSL, on libuv threads)';
  return e.reason === 'chosen'
    ? 'opened by JavaScript worker threads (chosen)'
    : `opened by JavaScript worker threads: the native shard opener is ${e.reason ?? 'unavailable'}; it is 1.5-2x faster (npm run build:native)`;
}
