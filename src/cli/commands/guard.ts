/**
 * `edgeguard guard calibrate` learns the input profile (per-statistic bounds and the feature-
 * squeezing threshold) from a folder of legitimate images; `edgeguard guard check` runs the whole
 * guard pipeline on images. Models come from protected packages, decrypted only in memory (or,
 * for development, from a plain .onnx with --onnx and --meta); opening them and reading the image
 * files is guard-models.ts.
 */
import { Command, InvalidArgumentError } from 'commander';
import { stat, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { ERROR_EXIT_CODES, EdgeguardError, fsError } from '../../errors/index.ts';
import {
  calibrateProfile,
  computeStatistics,
  guardConfig,
  loadGuardConfig,
  RECOMMENDED_SQUEEZERS,
  rateUpperBound,
  serializeProfile,
  type CalibrationSample,
  type GuardProfile,
} from '../../guard/index.ts';
import { guardOver, loadGuardProfile } from '../../runtime/index.ts';
import { collect } from '../args.ts';
import { Output, globalOptions } from '../output.ts';
import { checkImageFile, listImages, modelOptions, openModels, readInput, type ModelOpts } from './guard-models.ts';

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
          // What the adaptive evaluation measured best (docs/guard.md): 1-bit depth and a 3x3 median.
          squeeze: RECOMMENDED_SQUEEZERS,
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
