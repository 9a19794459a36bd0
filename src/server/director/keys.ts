/**
 * The director's keys, made on the control plane's first start in DATADIR/director/ (mode 0600):
 *   signing.pem  Ed25519 (PKCS#8): signs each device's director metadata (TUF "ed25519" key).
 *   sealing.pem  X25519 (PKCS#8): release content keys are stored sealed to it (HPKE, RFC 9180).
 * Replicas of one control plane share the data directory's keys as they share its database.
 * Sealing keeps the content keys out of database dumps and backups; whoever holds the data
 * directory and the database holds them (docs/threat-model.md, "Release director").
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createPublicKey, type KeyObject } from 'node:crypto';
import {
  assertPrivateFileMode,
  encodeSealPrivateKeyPem,
  generateSealKeyPair,
  parseSealPrivateKeyPem,
  writePrivateFile,
} from '../../crypto/index.ts';
import { fsError, isEdgeguardError } from '../../errors/index.ts';
import { generateRoleKey, readRoleKey, writeRoleKey, type RoleKey } from '../../release/index.ts';

export interface DirectorKeys {
  signing: RoleKey;
  sealing: { privateKey: KeyObject; publicKey: KeyObject };
}

export const DIRECTOR_KEY_DIR = 'director';

/** Make the key file unless it exists; a replica that made it first wins (its write was exclusive). */
async function createOnce(path: string, write: () => Promise<void>): Promise<void> {
  if (!existsSync(path)) {
    try {
      await write();
    } catch (e) {
      if (!isEdgeguardError(e, 'EG_EXISTS')) throw e;
    }
  }
  await assertPrivateFileMode(path);
}

export async function loadOrCreateDirectorKeys(dataDir: string): Promise<DirectorKeys> {
  const dir = join(dataDir, DIRECTOR_KEY_DIR);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const signingPath = join(dir, 'signing.pem');
  const sealingPath = join(dir, 'sealing.pem');
  await createOnce(signingPath, () => writeRoleKey(signingPath, generateRoleKey()));
  await createOnce(sealingPath, () =>
    writePrivateFile(sealingPath, encodeSealPrivateKeyPem(generateSealKeyPair().privateKey)),
  );
  const signing = await readRoleKey(signingPath);
  let pem: string;
  try {
    pem = await readFile(sealingPath, 'utf8');
  } catch (e) {
    throw fsError(e, sealingPath, 'read the director sealing key');
  }
  const privateKey = parseSealPrivateKeyPem(pem, sealingPath);
  return { signing, sealing: { privateKey, publicKey: createPublicKey(privateKey) } };
}
