/** Scratch directories and key material for tests; everything is removed when the test ends. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';
import {
  encodeContentKeyFile,
  encodePrivateKeyPem,
  encodePublicKeyPem,
  generateContentKey,
  generateSigningKey,
  writePrivateFile,
  type ContentKey,
  type SigningAlgorithm,
  type SigningKeyPair,
} from '../../src/crypto/index.ts';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const FIXTURES = join(REPO_ROOT, 'fixtures');
export const CLI = join(REPO_ROOT, 'bin', 'edgeguard.js');

/**
 * A scratch directory removed when the test ends. node:test runs a test's after hooks in the order
 * they were registered and stops at the first that throws, so this removal usually runs before the
 * hooks that close the services writing into the directory (registered later), and a failed removal
 * would skip those closes and leave the test file's process running for good. The removal therefore
 * retries (a file written during it gives ENOTEMPTY) and reports, rather than throws, a failure.
 */
export async function tempDir(
  t: TestContext | { after(fn: () => Promise<void>): void },
  prefix = 'eg-test-',
): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.after(async () => {
    try {
      await rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
    } catch (e) {
      process.stderr.write(`# tempDir: ${dir} was not removed: ${(e as Error).message}\n`);
    }
  });
  return dir;
}

export interface KeyFiles {
  contentKey: ContentKey;
  signer: SigningKeyPair;
  contentKeyPath: string;
  privateKeyPath: string;
  publicKeyPath: string;
}

export async function writeKeys(
  dir: string,
  alg: SigningAlgorithm = 'ecdsa-p256',
  name = 'publisher',
): Promise<KeyFiles> {
  const contentKey = generateContentKey();
  const signer = generateSigningKey(alg);
  const contentKeyPath = join(dir, `${name}-model.key`);
  const privateKeyPath = join(dir, `${name}.key`);
  const publicKeyPath = join(dir, `${name}.pub`);
  await writePrivateFile(contentKeyPath, encodeContentKeyFile(contentKey));
  await writePrivateFile(privateKeyPath, encodePrivateKeyPem(signer.privateKey));
  await writeFile(publicKeyPath, encodePublicKeyPem(signer.publicKey));
  return { contentKey, signer, contentKeyPath, privateKeyPath, publicKeyPath };
}
