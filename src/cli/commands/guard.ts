/**
 * `edgeguard guard calibrate` learns the input profile (per-statistic bounds and the feature-
 * squeezing threshold) from a folder of legitimate images; `edgeguard guard check` runs the whole
 * guard pipeline on images. Models come from protected packages, decrypted only in memory (or,
 * for development, from a plain .onnx with --onnx and --meta).
 */
import { Command, InvalidArgumentError } from 'commander';
import { readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, extname, join, resolve } from 'node:path';
import YAML from 'yaml';
import { wipe, type ContentKey } from '../../crypto/index.ts';
import { ERROR_EXIT_CODES, EdgeguardError, fsError } from '../../errors/index.ts';
import { createSessionFromMemory, decodeImage, loadProtectedModel, pixelsToTensor } from '../../inference/index.ts';
import { parseModelMetadata, type ImagePreprocessing } from '../../model/index.ts';
import {
  Guard,
  calibrateProfile,
  computeStatistics,
  guardConfig,
  guardInputShape,
  loadGuardConfig,
  loadedModelClassifier,
  parseProfile,
  serializeProfile,
  sessionClassifier,
  type CalibrationSample,
  type Classifier,
  type GuardProfile,
  type PlanarShape,
} from '../../guard/index.ts';
import { collect } from '../args.ts';
import { contentKeySource } from '../content-key-source.ts';
import { resolveContentKey } from '../../keystore/index.ts';
import { readTrustedKeys } from '../model-options.ts';
import { Output, globalOptions } from '../output.ts';

interface ModelOpts {
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

interface CalibrateOpts extends ModelOpts {
  images: string;
  fpr: number;
  fprConfidence: number;
  perStage?: boolean;
  squeezeFpr?: number;
  confidence: number;
  out: string;
  force?: boolean;
}

interface CheckOpts extends ModelOpts {
  profile?: string;
  config?: string;
  input: string[];
}

interface OpenedModel {
  classifier: Classifier;
  pre: ImagePreprocessing;
  shape: PlanarShape;
  labels: string[] | undefined;
  info: { name: string; version: number; sha256?: string };
  release(): Promise<void>;
}

const IMAGE_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg', '.webp']);

function parseRate(value: string): number {
  const n = Number(value);
  if (!(n > 0 && n < 1)) throw new InvalidArgumentError('expected a rate between 0 and 1, e.g. 0.05.');
  return n;
}

function parseLevel(value: string): number {
  const n = Number(value);
  if (!(n >= 0 && n < 1))
    throw new InvalidArgumentError('expected a confidence level in [0, 1), e.g. 0.95 (0: the point estimate).');
  return n;
}

function parseProbability(value: string): number {
  const n = Number(value);
  if (!(n >= 0 && n <= 1)) throw new InvalidArgumentError('expected a probability between 0 and 1, e.g. 0.85.');
  return n;
}

function modelOptions(cmd: Command): Command {
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
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw fsError(e, path, 'read the metadata file');
  }
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

async function openOnnx(path: string, metaPath: string | undefined): Promise<OpenedModel> {
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

async function openPackage(
  path: string,
  key: ContentKey,
  publicKeys: Awaited<ReturnType<typeof readTrustedKeys>>,
): Promise<OpenedModel> {
  const model = await loadProtectedModel(path, { publicKeys, contentKey: key });
  try {
    const pre = model.metadata.preprocessing;
    const shape = guardInputShape(pre, `model ${model.metadata.name}`);
    return {
      classifier: loadedModelClassifier(model),
      pre: pre!,
      shape,
      labels: model.metadata.outputs[0]?.labels,
      info: { name: model.metadata.name, version: model.metadata.version, sha256: model.provenance.headerSha256 },
      release: () => model.release(),
    };
  } catch (e) {
    await model.release();
    throw e;
  }
}

/** Open the primary model and, when asked for, the ensemble member. */
async function openModels(o: ModelOpts): Promise<{ primary: OpenedModel; ensemble?: OpenedModel }> {
  if (Boolean(o.model) === Boolean(o.onnx))
    throw new EdgeguardError(
      'EG_USAGE',
      'pass the primary model: --model mnist.egm (or --onnx model.onnx --meta meta.yaml for development).',
    );
  if (o.ensemble && o.ensembleOnnx)
    throw new EdgeguardError('EG_USAGE', 'pass either --ensemble or --ensemble-onnx, not both.');
  const opened: OpenedModel[] = [];
  try {
    if (o.onnx) {
      const primary = await openOnnx(o.onnx, o.meta);
      opened.push(primary);
      const ensemble = o.ensembleOnnx ? await openOnnx(o.ensembleOnnx, o.meta) : undefined;
      if (ensemble) opened.push(ensemble);
      if (o.ensemble) throw new EdgeguardError('EG_USAGE', 'with --onnx give the ensemble as --ensemble-onnx.');
      return { primary, ...(ensemble ? { ensemble } : {}) };
    }
    if (o.ensembleOnnx)
      throw new EdgeguardError(
        'EG_USAGE',
        'with --model give the ensemble as a protected package: --ensemble other.egm.',
      );
    const publicKeys = await readTrustedKeys(o.pub);
    const source = await resolveContentKey(contentKeySource(o));
    try {
      const primary = await openPackage(o.model!, source.key, publicKeys);
      opened.push(primary);
      const ensemble = o.ensemble ? await openPackage(o.ensemble, source.key, publicKeys) : undefined;
      if (ensemble) opened.push(ensemble);
      return { primary, ...(ensemble ? { ensemble } : {}) };
    } finally {
      wipe(source.key.bytes);
    }
  } catch (e) {
    await Promise.all(opened.map((m) => m.release()));
    throw e;
  }
}

async function releaseAll(m: { primary: OpenedModel; ensemble?: OpenedModel }): Promise<void> {
  await m.primary.release();
  await m.ensemble?.release();
}

/** Decode one image in memory as the model's preprocessing declares; the bytes are wiped after. */
async function readInput(path: string, pre: ImagePreprocessing) {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (e) {
    throw fsError(e, path, 'read the image');
  }
  try {
    const image = await decodeImage(bytes, pre);
    return { image, tensor: pixelsToTensor(image, pre).data };
  } catch (e) {
    if (e instanceof EdgeguardError) throw new EdgeguardError(e.code, `${path}: ${e.message}`, { cause: e });
    throw e;
  } finally {
    bytes.fill(0);
  }
}

async function listImages(dir: string): Promise<string[]> {
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

export function registerGuardCommands(program: Command): void {
  const guard = program
    .command('guard')
    .description('the adversarial-input guard: calibrate its profile, check inputs');

  modelOptions(guard.command('calibrate'))
    .description(
      'learn the input profile (validation bounds and the confidence, ensemble and squeezing thresholds) from legitimate images at a chosen false-positive rate',
    )
    .requiredOption('--images <dir>', 'folder of legitimate images (PNG, JPEG, WebP)')
    .option(
      '--fpr <rate>',
      'share of legitimate inputs the whole default pipeline may flag or reject (with --per-stage: of validation and of squeezing each)',
      parseRate,
      0.05,
    )
    .option(
      '--fpr-confidence <level>',
      'meet --fpr with this confidence (one-sided upper bound on the cross-validated rate; 0: the point estimate)',
      parseLevel,
      0.95,
    )
    .option(
      '--per-stage',
      'calibrate validation and squeezing separately at --fpr (and --squeeze-fpr); confidence stays 0.85 and the ensemble flags argmax disagreement',
    )
    .option(
      '--squeeze-fpr <rate>',
      'with --per-stage: separate target for the squeezing detector (default: --fpr)',
      parseRate,
    )
    .option(
      '--confidence <p>',
      'confidence threshold whose rate on the images is recorded (informational)',
      parseProbability,
      0.85,
    )
    .requiredOption('-o, --out <file>', 'where to write profile.json')
    .option('--force', 'overwrite the output file')
    .action(async (opts: CalibrateOpts, cmd: Command) => {
      const out = new Output(globalOptions(cmd));
      if (!opts.force && (await stat(opts.out).catch(() => undefined))) {
        throw new EdgeguardError('EG_EXISTS', `${opts.out} already exists; remove it or pass --force.`);
      }
      if (opts.squeezeFpr !== undefined && !opts.perStage) {
        throw new EdgeguardError(
          'EG_USAGE',
          '--squeeze-fpr sets a per-stage rate; add --per-stage, or let the stages share the --fpr budget.',
        );
      }
      const files = await listImages(opts.images);
      if (files.length === 0) throw new EdgeguardError('EG_USAGE', `${opts.images} holds no PNG, JPEG or WebP images.`);
      const models = await openModels(opts);
      let profile: GuardProfile;
      try {
        const pre = models.primary.pre;
        const samples: CalibrationSample[] = [];
        for (const file of files) {
          const { image, tensor } = await readInput(file, pre);
          samples.push({ stats: computeStatistics(image), tensor });
          image.pixels.fill(0);
        }
        out.info(`calibrating on ${samples.length} images from ${opts.images}`);
        profile = await calibrateProfile({
          samples,
          fpr: opts.fpr,
          pipeline: !opts.perStage,
          fprConfidence: opts.fprConfidence,
          ...(opts.squeezeFpr !== undefined ? { squeezeFpr: opts.squeezeFpr } : {}),
          primary: models.primary.classifier,
          ensemble: models.ensemble?.classifier,
          shape: models.primary.shape,
          squeeze: { bitDepth: 1, medianSize: 2 },
          confidenceThreshold: opts.confidence,
          model: {
            name: models.primary.info.name,
            version: models.primary.info.version,
            ...(models.primary.info.sha256 ? { sha256: models.primary.info.sha256 } : {}),
          },
        });
        for (const s of samples) s.tensor?.fill(0);
      } finally {
        await releaseAll(models);
      }
      try {
        await writeFile(opts.out, serializeProfile(profile), { flag: opts.force ? 'w' : 'wx' });
      } catch (e) {
        throw fsError(e, opts.out, 'write the profile to');
      }
      const v = profile.validation;
      const pl = profile.pipeline;
      const pct = (x: number | undefined) => (x === undefined ? 'n/a' : `${(x * 100).toFixed(1)}%`);
      if (pl && pl.upperBound > pl.fpr) {
        out.warn(
          `with ${profile.samples} images the pipeline's false-positive rate can only be bounded at ${pct(pl.upperBound)} (at ${pl.fprConfidence} confidence), above the --fpr ${pct(pl.fpr)}; calibrate on more images (several hundred) or lower --fpr-confidence.`,
        );
      }
      out.result({ ok: true, profile: opts.out, ...profile }, [
        pl
          ? `wrote ${opts.out}: ${profile.samples} images, whole-pipeline target FPR ${pct(pl.fpr)} at ${pl.fprConfidence} confidence: cross-validated ${pct(pl.crossValidatedFpr)} (upper bound ${pct(pl.upperBound)}), per-stage rate ${pct(pl.stageRate)}`
          : `wrote ${opts.out}: ${profile.samples} images, validation target FPR ${pct(v.fpr)} (measured ${pct(v.measuredFpr)}), squeezing threshold ${profile.squeeze?.threshold.toFixed(4)} (measured FPR ${pct(profile.squeeze?.measuredFpr)})`,
        ...Object.entries(v.statistics).map(
          ([k, b]) => `  ${k.padEnd(10)} ${b.min.toPrecision(4)} .. ${b.max.toPrecision(4)}`,
        ),
        `  size       ${v.dimensions.minWidth}..${v.dimensions.maxWidth} x ${v.dimensions.minHeight}..${v.dimensions.maxHeight}, formats ${v.formats.join(', ')}`,
        ...(pl
          ? [
              `  confidence below ${pl.confidenceThreshold.toFixed(4)} flags` +
                (pl.ensembleThreshold !== undefined
                  ? `; ensemble L1 distance above ${pl.ensembleThreshold.toFixed(4)} flags`
                  : '') +
                `; squeezing above ${profile.squeeze?.threshold.toFixed(4)} flags`,
            ]
          : []),
        `on these images: ${pct(profile.observed?.lowConfidenceRate)} below confidence ${opts.confidence}` +
          (profile.observed?.ensembleDisagreementRate !== undefined
            ? `, the two models' argmaxes differ on ${pct(profile.observed.ensembleDisagreementRate)}`
            : ''),
      ]);
    });

  modelOptions(guard.command('check'))
    .description(
      'run the guard pipeline on images: accept, flag (fallback answer, review) or reject; exits 6 (EG_GUARD) when any input is rejected, 0 otherwise',
    )
    .option('--profile <file>', 'calibrated profile.json (default: the config file\'s "profile")')
    .option(
      '--config <file.yaml>',
      "guard configuration (defaults: every stage on, with the profile's thresholds; confidence 0.85 when the profile has none)",
    )
    .requiredOption('--input <image>', 'image to check (repeatable)', collect)
    .action(async (opts: CheckOpts, cmd: Command) => {
      const out = new Output(globalOptions(cmd));
      const config = opts.config ? await loadGuardConfig(opts.config) : guardConfig();
      const profilePath =
        opts.profile ?? (config.profile && opts.config ? resolve(dirname(opts.config), config.profile) : undefined);
      let profile: GuardProfile | undefined;
      if (profilePath) {
        let bytes: Buffer;
        try {
          bytes = await readFile(profilePath);
        } catch (e) {
          throw fsError(e, profilePath, 'read the profile');
        }
        profile = parseProfile(bytes, profilePath);
      }
      const models = await openModels(opts);
      try {
        const g = new Guard({
          config,
          ...(profile ? { profile } : {}),
          shape: models.primary.shape,
          primary: models.primary.classifier,
          ...(models.ensemble ? { ensemble: models.ensemble.classifier } : {}),
          ...(models.primary.labels ? { labels: models.primary.labels } : {}),
        });
        const results = [];
        for (const file of opts.input) {
          const input = await readInput(file, models.primary.pre);
          try {
            const r = await g.check(input);
            results.push({ input: file, ...r });
          } finally {
            input.image.pixels.fill(0);
            input.tensor.fill(0);
          }
        }
        // Exit status: 0 when every input got an answer (accepted, or flagged and answered by the
        // fallback); EG_GUARD's (6) when any input was rejected. --json still prints every result.
        const rejected = results.filter((r) => r.verdict === 'reject').map((r) => r.input);
        const counts = { accept: 0, flag: 0, reject: 0 };
        for (const r of results) counts[r.verdict]++;
        const error = rejected.length
          ? new EdgeguardError(
              'EG_GUARD',
              `${rejected.length} of ${results.length} input${results.length === 1 ? ' was' : 's were'} rejected by the guard: ${rejected.join(', ')}.`,
              { details: { rejected } },
            )
          : undefined;
        out.result(
          { ok: !error, verdicts: counts, ...(error ? { error: error.toJSON() } : {}), results },
          results.map((r) => {
            const answer = r.answer
              ? `${r.answer.label} (${r.answer.confidence.toFixed(3)}, ${r.answer.source} model)`
              : 'no answer';
            const why = r.reasons.length ? `: ${r.reasons.map((x) => x.message).join('; ')}` : '';
            return `${r.input}: ${r.verdict.toUpperCase()} -> ${answer}${why}`;
          }),
        );
        if (error) {
          if (!out.opts.json) process.stderr.write(`${error.code}: ${error.message}\n`);
          process.exitCode = ERROR_EXIT_CODES.EG_GUARD;
        }
      } finally {
        await releaseAll(models);
      }
    });
}
