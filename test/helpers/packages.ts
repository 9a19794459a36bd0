/** Build real packages from bytes for the model-package tests. */
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
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

/** Pack a demo model from fixtures/models with its meta.yaml (mnist-cnn, mnist-mlp, pump-anomaly). */
export async function packDemoModel(
  dir: string,
  keys: { contentKey: ContentKey; signer: SigningKeyPair },
  name: 'mnist-cnn' | 'mnist-mlp' | 'pump-anomaly',
): Promise<string> {
  const models = fileURLToPath(new URL('../../fixtures/models/', import.meta.url));
  const metaFile = name === 'pump-anomaly' ? 'pump-anomaly.meta.yaml' : 'mnist.meta.yaml';
  const meta = YAML.parse(await readFile(join(models, metaFile), 'utf8')) as object;
  const outputPath = join(dir, `${name}.egm`);
  await packModel({
    inputPath: join(models, `${name}.onnx`),
    outputPath,
    contentKey: keys.contentKey,
    signer: keys.signer,
    metadata: parseModelMetadata({ ...meta, name, version: 1, format: 'onnx' }),
  });
  return outputPath;
}
