/**
 * A device and a release repository for the A/B install tests: two releases of the MNIST
 * classifier (v1 the MLP, v2 the CNN, so a mix of the two is visible), each with a smoke test,
 * published over HTTP on 127.0.0.1; a device with a software key store (or a TPM one), the
 * content key wrapped to it and the repository's root provisioned.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import YAML from 'yaml';
import type { TestContext } from 'node:test';
import { FIXTURES, tempDir, writeKeys, type KeyFiles } from '../helpers/workspace.ts';
import { serveDirectory, type StaticServer } from '../helpers/static-server.ts';
import { packModel, parseModelMetadata } from '../../src/model/index.ts';
import { encodeWrappedKeyFile, initDevice, wrapContentKey, type KeyStore } from '../../src/keystore/index.ts';
import {
  addRelease,
  initRepository,
  provisionTrustedRoot,
  publishRepository,
  releasePaths,
  type ReleaseKind,
} from '../../src/release/index.ts';

export const SMOKE_IMAGE = join(FIXTURES, 'digits', '3-0.png');

export interface AbFixture {
  tmp: string;
  keys: KeyFiles;
  repo: string;
  server: StaticServer;
  deviceDir: string;
  dataDir: string;
  wrappedKeyPath: string;
  store: KeyStore;
  metadataDir: string;
  /** Target paths by version. */
  targets: Record<number, string>;
  packages: Record<number, string>;
}

export async function packMnist(
  dir: string,
  keys: KeyFiles,
  version: number,
  arch: 'mnist-mlp' | 'mnist-cnn',
  format: 'onnx' | 'opaque' = 'onnx',
): Promise<string> {
  const meta = YAML.parse(await readFile(join(FIXTURES, 'models', 'mnist.meta.yaml'), 'utf8')) as object;
  const outputPath = join(dir, `mnist-${version}.egm`);
  await packModel({
    inputPath: join(FIXTURES, 'models', `${arch}.onnx`),
    outputPath,
    contentKey: keys.contentKey,
    signer: keys.signer,
    metadata: parseModelMetadata(
      format === 'onnx' ? { ...meta, name: 'mnist', version, format } : { name: 'mnist', version, format },
    ),
  });
  return outputPath;
}

export interface AbFixtureOptions {
  tcti?: string;
  /** Releases to publish: version, architecture, minVersion, smoke label, kind. */
  releases?: Array<{
    version: number;
    arch?: 'mnist-mlp' | 'mnist-cnn';
    minVersion?: number;
    label?: string;
    kind?: ReleaseKind;
  }>;
}

export async function abFixture(
  t: TestContext | { after(fn: () => Promise<void>): void },
  o: AbFixtureOptions = {},
): Promise<AbFixture> {
  const tmp = await tempDir(t, 'eg-ab-');
  const keys = await writeKeys(tmp);
  const repo = join(tmp, 'repo');
  await initRepository({ dir: repo });
  const releases = o.releases ?? [
    { version: 1, arch: 'mnist-mlp' as const, minVersion: 1 },
    { version: 2, arch: 'mnist-cnn' as const, minVersion: 2 },
  ];
  const targets: Record<number, string> = {};
  const packages: Record<number, string> = {};
  for (const r of releases) {
    const dir = join(tmp, `v${r.version}`);
    await mkdir(dir);
    const kind = r.kind ?? 'model';
    const pkg = await packMnist(dir, keys, r.version, r.arch ?? 'mnist-cnn', kind === 'model' ? 'onnx' : 'opaque');
    packages[r.version] = pkg;
    const target = await addRelease({
      dir: repo,
      packagePath: pkg,
      version: r.version,
      minVersion: r.minVersion ?? 0,
      kind,
      ...(kind === 'model' ? { smokeTest: { inputPath: SMOKE_IMAGE, expectedLabel: r.label ?? '3' } } : {}),
    });
    targets[r.version] = target.path;
  }
  await publishRepository(repo);
  const server = await serveDirectory(t, releasePaths(repo).repository);
  const deviceDir = join(tmp, 'device');
  const init = await initDevice({ dir: deviceDir, ...(o.tcti ? { tcti: o.tcti } : {}) });
  const wrappedKeyPath = join(deviceDir, 'model.key.wrapped');
  await writeFile(wrappedKeyPath, encodeWrappedKeyFile(wrapContentKey(keys.contentKey, init.store.bindingPublicKey)));
  const dataDir = join(tmp, 'data');
  const metadataDir = join(dataDir, 'tuf');
  await provisionTrustedRoot(metadataDir, await readFile(join(releasePaths(repo).metadata, '1.root.json')));
  return {
    tmp,
    keys,
    repo,
    server,
    deviceDir,
    dataDir,
    wrappedKeyPath,
    store: init.store,
    metadataDir,
    targets,
    packages,
  };
}
