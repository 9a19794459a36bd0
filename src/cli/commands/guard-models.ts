/**
 * What the guard commands (guard.ts) work on: the model options they share, the primary and
 * ensemble classifiers opened from protected packages (decrypted only in memory) or, for
 * development, from plain ONNX with a metadata file, and the image files they read (each wiped
 * after use, its errors naming the file).
 */
import type { Command } from 'commander';
import { readFile, readdir } from 'node:fs/promises';
import { basename, extname, join } from 'node:path';
import YAML from 'yaml';
import { EdgeguardError, FILE_CAPS, fsError, readBoundedText } from '../../errors/index.ts';
import { createSessionFromMemory, decodeImage, pixelsToTensor } from '../../inference/index.ts';
import { parseModelMetadata, type ImagePreprocessing } from '../../model/index.ts';
import {
  guardInputShape,
  loadedModelClassifier,
  sessionClassifier,
  type Classifier,
  type PlanarShape,
} from '../../guard/index.ts';
import { checkInput, openModelSet, type GuardTarget } from '../../runtime/index.ts';
import { collect } from '../args.ts';
import { contentKeySource } from '../content-key-source.ts';
import { readTrustedKeys } from '../model-options.ts';

export interface ModelOpts {
  model?: string;
  onnx?: string;
  meta?: string;
  ensemble?: string;
  ensembleOnnx?: string;
  key?: string;
  wrappedKey?: string;
  device?: string;
  pub?: string[];
}

/** The primary (and ensemble) classifiers, from protected packages or, in development, plain ONNX. */
export interface OpenedModels {
  primary: Classifier;
  ensemble?: Classifier;
  pre: ImagePreprocessing;
  shape: PlanarShape;
  labels: string[] | undefined;
  info: { name: string; version: number; sha256?: string };
  release(): Promise<void>;
}

interface OnnxModel {
  classifier: Classifier;
  pre: ImagePreprocessing;
  shape: PlanarShape;
  labels: string[] | undefined;
  info: { name: string; version: number };
  release(): Promise<void>;
}

const IMAGE_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg', '.webp']);

export function modelOptions(cmd: Command): Command {
  return cmd
    .option('--model <package>', 'protected model package (.egm), the primary model')
    .option('--ensemble <package>', 'second model of another architecture (.egm, same key and publisher)')
    .option('--key <file>', 'content key file')
    .option('--wrapped-key <file>', 'content key wrapped to this device (use with --device)')
    .option('--device <dir>', 'device directory from `edgeguard device init`')
    .option('--pub <file>', 'trusted publisher public key (repeatable)', collect)
    .option('--onnx <file>', 'development only: a plain ONNX primary model instead of --model (needs --meta)')
    .option('--ensemble-onnx <file>', 'development only: a plain ONNX ensemble model')
    .option('--meta <file.yaml>', 'metadata with the preprocessing block, for --onnx');
}

async function readMetaPreprocessing(
  path: string | undefined,
): Promise<{ pre: ImagePreprocessing; labels: string[] | undefined }> {
  if (!path)
    throw new EdgeguardError(
      'EG_USAGE',
      '--onnx needs --meta file.yaml with the preprocessing block (e.g. fixtures/models/mnist.meta.yaml).',
    );
  const text = await readBoundedText(path, FILE_CAPS.config, 'read the metadata file');
  let parsed: unknown;
  try {
    parsed = YAML.parse(text);
  } catch (e) {
    throw new EdgeguardError('EG_CONFIG', `${path} is not valid YAML (${(e as Error).message.split('\n')[0]}).`, {
      cause: e,
    });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw new EdgeguardError('EG_CONFIG', `${path} must be a YAML mapping with a preprocessing block.`);
  let meta;
  try {
    meta = parseModelMetadata(
      { ...(parsed as Record<string, unknown>), name: 'development', version: 0, format: 'onnx' },
      path,
    );
  } catch (e) {
    throw new EdgeguardError('EG_CONFIG', (e as Error).message);
  }
  if (!meta.preprocessing)
    throw new EdgeguardError(
      'EG_CONFIG',
      `${path} has no preprocessing block; the guard needs to know how to decode images.`,
    );
  return { pre: meta.preprocessing, labels: meta.outputs[0]?.labels };
}

async function openOnnx(path: string, metaPath: string | undefined): Promise<OnnxModel> {
  const { pre, labels } = await readMetaPreprocessing(metaPath);
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (e) {
    throw fsError(e, path, 'read the model');
  }
  const shape = guardInputShape(pre, path);
  const session = await createSessionFromMemory(bytes, path);
  const dims = [1, shape.channels, shape.height, shape.width];
  return {
    classifier: sessionClassifier(session, { dims }),
    pre,
    shape,
    labels,
    info: { name: basename(path, extname(path)), version: 0 },
    release: () => session.release(),
  };
}

/** Open the primary model and, when asked for, the ensemble member. */
export async function openModels(o: ModelOpts): Promise<OpenedModels> {
  if (Boolean(o.model) === Boolean(o.onnx))
    throw new EdgeguardError(
      'EG_USAGE',
      'pass the primary model: --model mnist.egm (or --onnx model.onnx --meta meta.yaml for development).',
    );
  if (o.ensemble && o.ensembleOnnx)
    throw new EdgeguardError('EG_USAGE', 'pass either --ensemble or --ensemble-onnx, not both.');
  if (o.onnx) return openOnnxModels(o);
  if (o.ensembleOnnx)
    throw new EdgeguardError(
      'EG_USAGE',
      'with --model give the ensemble as a protected package: --ensemble other.egm.',
    );
  const set = await openModelSet({
    models: { primary: o.model!, ensemble: o.ensemble },
    publicKeys: await readTrustedKeys(o.pub),
    contentKey: contentKeySource(o),
  });
  const m = set.primary;
  if (!set.pre || !set.shape) {
    await set.release();
    throw new EdgeguardError(
      'EG_USAGE',
      `model ${m.metadata.name} takes no images (its metadata has no preprocessing block); the guard commands calibrate and check images only.`,
    );
  }
  return {
    primary: loadedModelClassifier(m),
    ...(set.ensemble ? { ensemble: loadedModelClassifier(set.ensemble) } : {}),
    pre: set.pre,
    shape: set.shape,
    labels: set.labels,
    info: { name: m.metadata.name, version: m.metadata.version, sha256: m.provenance.headerSha256 },
    release: () => set.release(),
  };
}

async function openOnnxModels(o: ModelOpts): Promise<OpenedModels> {
  const primary = await openOnnx(o.onnx!, o.meta);
  let ensemble: OnnxModel | undefined;
  try {
    if (o.ensembleOnnx) ensemble = await openOnnx(o.ensembleOnnx, o.meta);
    if (o.ensemble) throw new EdgeguardError('EG_USAGE', 'with --onnx give the ensemble as --ensemble-onnx.');
  } catch (e) {
    await primary.release();
    await ensemble?.release();
    throw e;
  }
  return {
    primary: primary.classifier,
    ...(ensemble ? { ensemble: ensemble.classifier } : {}),
    pre: primary.pre,
    shape: primary.shape,
    labels: primary.labels,
    info: primary.info,
    release: async () => {
      await primary.release();
      await ensemble?.release();
    },
  };
}

/** Read one image file for `use`; its bytes are wiped after, and an error names the file. */
async function withImageFile<T>(path: string, use: (bytes: Buffer) => Promise<T>): Promise<T> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (e) {
    throw fsError(e, path, 'read the image');
  }
  try {
    return await use(bytes);
  } catch (e) {
    if (e instanceof EdgeguardError) throw new EdgeguardError(e.code, `${path}: ${e.message}`, { cause: e });
    throw e;
  } finally {
    bytes.fill(0);
  }
}

/** Decode one image in memory as the model's preprocessing declares (calibration samples). */
export function readInput(path: string, pre: ImagePreprocessing) {
  return withImageFile(path, async (bytes) => {
    const image = await decodeImage(bytes, pre);
    return { image, tensor: pixelsToTensor(image, pre).data };
  });
}

/** One image file through the guard. */
export function checkImageFile(target: GuardTarget, path: string) {
  return withImageFile(path, (bytes) => checkInput(target, { kind: 'image', bytes }));
}

export async function listImages(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    throw fsError(e, dir, 'list the images in');
  }
  return names
    .filter((n) => IMAGE_EXTENSIONS.has(extname(n).toLowerCase()))
    .sort()
    .map((n) => join(dir, n));
}
