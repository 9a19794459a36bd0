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
import { ERROR_EXIT_CODES, EdgeguardError, fsError } from '../../errors/index.ts';
import { createSessionFromMemory, decodeImage, pixelsToTensor } from '../../inference/index.ts';
import { parseModelMetadata, type ImagePreprocessing } from '../../model/index.ts';
import {
  calibrateProfile,
  computeStatistics,
  guardConfig,
  guardInputShape,
  loadGuardConfig,
  loadedModelClassifier,
  rateUpperBound,
  serializeProfile,
  sessionClassifier,
  type CalibrationSample,
  type Classifier,
  type GuardProfile,
  type PlanarShape,
} from '../../guard/index.ts';
import { checkInput, guardOver, loadGuardProfile, openModelSet, type GuardTarget } from '../../runtime/index.ts';
import { collect } from '../args.ts';
import { contentKeySource } from '../content-key-source.ts';
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
  acceptUnmet?: boolean;
}

/**
 * How many images a calibration would need for the whole-pipeline false-positive rate to be
 * bounded within `fpr` at `level`, if the cross-validated rate stayed at `observed` (at most half
 * the budget: the calibration spends the rest on detection).
 */
function imagesNeeded(fpr: number, level: number, observed: number): number {
  const rate = Math.min(observed, fpr / 2);
  const fits = (n: number) => rateUpperBound(Math.ceil(rate * n), n, level) <= fpr;
  let hi = 16;
  while (!fits(hi) && hi < 1e7) hi *= 2;
  let lo = hi / 2;
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (fits(mid)) hi = mid;
    else lo = mid;
  }
  return hi;
}

interface CheckOpts extends ModelOpts {
  profile?: string;
  config?: string;
  input: string[];
}

/** The primary (and ensemble) classifiers, from protected packages or, in development, plain ONNX. */
interface OpenedModels {
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
async function openModels(o: ModelOpts): Promise<OpenedModels> {
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
function readInput(path: string, pre: ImagePreprocessing) {
  return withImageFile(path, async (bytes) => {
    const image = await decodeImage(bytes, pre);
    return { image, tensor: pixelsToTensor(image, pre).data };
  });
}

/** One image file through the guard. */
function checkImageFile(target: GuardTarget, path: string) {
  return withImageFile(path, (bytes) => checkInput(target, { kind: 'image', bytes }));
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
    .option(
      '--accept-unmet',
      'write the profile even when the images are too few to bound the false-positive rate within --fpr',
    )
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
        const pre = models.pre;
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
          primary: models.primary,
          ensemble: models.ensemble,
          shape: models.shape,
          squeeze: { bitDepth: 1, medianSize: 2 },
          confidenceThreshold: opts.confidence,
          model: {
            name: models.info.name,
            version: models.info.version,
            ...(models.info.sha256 ? { sha256: models.info.sha256 } : {}),
          },
        });
        for (const s of samples) s.tensor?.fill(0);
      } finally {
        await models.release();
      }
      const v = profile.validation;
      const pl = profile.pipeline;
      const pct = (x: number | undefined) => (x === undefined ? 'n/a' : `${(x * 100).toFixed(1)}%`);
      const met = !pl || pl.upperBound <= pl.fpr;
      if (pl && !met) {
        const needed = imagesNeeded(pl.fpr, pl.fprConfidence, pl.crossValidatedFpr);
        const why =
          `with ${profile.samples} images the pipeline's false-positive rate can only be bounded at ${pct(pl.upperBound)} ` +
          `(at ${pl.fprConfidence} confidence), above --fpr ${pct(pl.fpr)}; about ${needed} images ` +
          `(${Math.max(0, needed - profile.samples)} more) would bound it, or lower --fpr-confidence`;
        if (!opts.acceptUnmet)
          throw new EdgeguardError('EG_GUARD', `${why}; no profile was written (--accept-unmet writes it anyway).`, {
            details: { samples: profile.samples, imagesNeeded: needed, upperBound: pl.upperBound, fpr: pl.fpr },
          });
        out.warn(`${why}; writing it anyway (--accept-unmet).`);
      }
      try {
        await writeFile(opts.out, serializeProfile(profile), { flag: opts.force ? 'w' : 'wx' });
      } catch (e) {
        throw fsError(e, opts.out, 'write the profile to');
      }
      out.result({ ok: true, met, profile: opts.out, ...profile }, [
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
      const profile = profilePath ? await loadGuardProfile(profilePath) : undefined;
      const models = await openModels(opts);
      try {
        const target = {
          guard: guardOver(models, models.shape, models.labels, { config, profile }),
          pre: models.pre,
          shape: models.shape,
        };
        const results = [];
        for (const file of opts.input) {
          const { result } = await checkImageFile(target, file);
          results.push({ input: file, ...result });
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
        await models.release();
      }
    });
}
