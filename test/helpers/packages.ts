/** Build real packages from bytes for the model-package tests. */
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { packModel, parseModelMetadata, type PackResult } from '../../src/model/index.ts';
import type { CipherSuite, ContentKey, SigningKeyPair } from '../../src/crypto/index.ts';

export function opaqueMetadata(name = 'blob', version = 1) {
  return parseModelMetadata({ name, version, format: 'opaque' });
}

export async function packBytes(
  dir: string,
  data: Buffer,
  keys: { contentKey: ContentKey; signer: SigningKeyPair },
  o: {
    suite?: CipherSuite;
    chunkSize?: number;
    shardSize?: number;
    name?: string;
    version?: number;
    file?: string;
  } = {},
): Promise<PackResult> {
  const tag = randomBytes(4).toString('hex');
  const input = join(dir, `${o.file ?? 'input'}-${tag}.bin`);
  await writeFile(input, data);
  return packModel({
    inputPath: input,
    outputPath: join(dir, `${o.file ?? 'pkg'}-${tag}.egm`),
    contentKey: keys.contentKey,
    signer: keys.signer,
    metadata: opaqueMetadata(o.name, o.version),
    suite: o.suite,
    chunkSize: o.chunkSize,
    shardSize: o.shardSize,
    resourceName: 'model.bin',
  });
}
