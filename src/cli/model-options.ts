/** Shared option handling for commands that read packages: keys and signatures. */
import type { KeyObject } from 'node:crypto';
import { readPublicSigningKey } from '../crypto/index.ts';
import { EdgeguardError } from '../errors/index.ts';

export async function readTrustedKeys(paths: string[] | undefined): Promise<KeyObject[]> {
  if (!paths || paths.length === 0) {
    throw new EdgeguardError('EG_USAGE', 'pass the publisher public key with --pub publisher.pub; packages are never used unverified.');
  }
  return Promise.all(paths.map((p) => readPublicSigningKey(p)));
}
