/** A directory with the two demo models packed, a review key, and the agent config for it (benchmarks only). */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import YAML from 'yaml';
import {
  encodeContentKeyFile,
  encodePrivateKeyPem,
  encodePublicKeyPem,
  encodeSealPublicKeyPem,
  generateContentKey,
  generateSealKeyPair,
  generateSigningKey,
  writePrivateFile,
  type SealKeyPair,
} from '../../src/crypto/index.ts';
import { packModel, parseModelMetadata } from '../../src/model/index.ts';
import { agentConfig, type AgentConfig, type AgentConfigInput } from '../../src/agent/config.ts';

export const FIXTURES = new URL('../../fixtures/', import.meta.url).pathname;

export async function benchAgentConfig(
  dir: string,
  limits: AgentConfigInput['limits'] = {},
  overrides: Partial<AgentConfigInput> = {},
): Promise<{ config: AgentConfig; review: SealKeyPair }> {
  const contentKey = generateContentKey();
  const signer = generateSigningKey('ecdsa-p256');
  await writePrivateFile(join(dir, 'model.key'), encodeContentKeyFile(contentKey));
  await writePrivateFile(join(dir, 'publisher.key'), encodePrivateKeyPem(signer.privateKey));
  await writeFile(join(dir, 'publisher.pub'), encodePublicKeyPem(signer.publicKey));
  const meta = YAML.parse(await readFile(join(FIXTURES, 'models', 'mnist.meta.yaml'), 'utf8')) as Record<
    string,
    unknown
  >;
  for (const [file, name] of [
    ['mnist-cnn.onnx', 'mnist-cnn'],
    ['mnist-mlp.onnx', 'mnist-mlp'],
  ] as const) {
    await packModel({
      inputPath: join(FIXTURES, 'models', file),
      outputPath: join(dir, `${name}.egm`),
      contentKey,
      signer,
      metadata: parseModelMetadata({ ...meta, name, version: 1, format: 'onnx' }),
    });
  }
  const review = generateSealKeyPair();
  await writeFile(join(dir, 'review.pub'), encodeSealPublicKeyPem(review.publicKey));
  const config = agentConfig(
    {
      listen: { host: '127.0.0.1', port: 0 },
      trust: { publicKeys: ['publisher.pub'] },
      contentKey: { file: 'model.key' },
      models: { primary: 'mnist-cnn.egm', ensemble: 'mnist-mlp.egm' },
      guard: { profile: join(FIXTURES, 'guard', 'mnist-cnn.profile.json') },
      review: { publicKey: 'review.pub', spool: { dir: 'spool', maxItems: 100_000 } },
      limits: { concurrency: 4, ...limits },
      // Thousands of queries of one digit from one client: a benchmark, not an attack.
      probing: { enabled: false },
      log: { level: 'silent' },
      ...overrides,
    },
    dir,
  );
  return { config, review };
}
