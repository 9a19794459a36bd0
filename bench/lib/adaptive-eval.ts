/**
 * The adaptive part of the guard evaluation (issue 17, item 1): attacks by an adversary who knows
 * the guard (scripts/lib/adaptive-attacks.ts), judged at fixed false-positive rates.
 *
 * Data: every threshold is fitted on the 1,000 calibration digits; attacks start from evaluation
 * digits and false positives are counted on all 2,000 evaluation digits (the fixed split of
 * scripts/lib/mnist-split.ts: neither set saw training or each other). Only successful examples
 * count: the clean digit was classified correctly by the primary and the attacked one is not.
 *
 * At each rate r (1%, 4%) every detector is calibrated to r on the calibration digits: each stage
 * alone at r (validation bounds, confidence quantile, ensemble and squeezing score quantiles), the
 * pipeline as `guard calibrate --fpr r` makes it (its per-stage thresholds, and its calibrated
 * combiner, the default), and any extra detector given. Detection and
 * clean false positives get 95% Wilson intervals.
 */
import * as tf from '@tensorflow/tfjs';
import {
  Guard,
  calibrateProfile,
  computeStatistics,
  floatImageToGuardImage,
  guardConfig,
  lowerThresholdAtRate,
  thresholdAtFpr,
  validateStatistics,
  type GuardProfile,
  type GuardResult,
  type InputStatistics,
  type SqueezeSettings,
} from '../../src/guard/index.ts';
import { adaptiveBim, runnerUpTargets } from '../../scripts/lib/adaptive-attacks.ts';
import { bim } from '../../scripts/lib/attacks.ts';
import { MNIST_PIXELS } from '../../scripts/lib/mnist-split.ts';
import { SHAPE, asInput, type DemoModels } from './guard-setup.ts';
import { wilsonInterval } from './wilson.ts';

/** One input's continuous scores, from a guard run with every stage computed. */
export interface InputScores {
  stats: InputStatistics;
  confidence: number;
  ensemble: number;
  squeeze: number;
  primaryIndex: number;
  /**
   * Whether the guard under each evaluated rate's profile (keyed by the rate) does not accept:
   * with its calibrated combiner (the default), and with the profile's per-stage thresholds.
   */
  detected: Map<number, { combined: boolean; perStage: boolean }>;
  /** Scores of extra detectors (higher = more suspicious), keyed by detector name. */
  extra: Record<string, number>;
}

/** A detector calibrated at a rate: does it fire on an input? */
export type Detector = (s: InputScores) => boolean;

export interface ExtraDetector {
  name: string;
  /** The detector's score of one model input (higher = more suspicious). */
  score: (tensor: Float32Array) => Promise<number> | number;
}

export interface AttackVariant {
  name: string;
  eps: number;
  /** Makes the adversarial rows for flat clean rows and their labels. */
  run: (images: Float32Array, labels: number[]) => Float32Array;
}

export interface AdaptiveEvalOptions {
  models: DemoModels;
  cnnTf: tf.LayersModel;
  mlpTf: tf.LayersModel;
  calibration: Float32Array[];
  evaluation: Float32Array[];
  evaluationLabels: number[];
  /** How many evaluation digits the attacks start from (the first ones of the split). */
  attackCount: number;
  rates: number[];
  epsilons: number[];
  steps: number;
  /** The squeezers calibrated (and known to the squeezing-aware attacker). */
  squeeze: SqueezeSettings;
  extra?: ExtraDetector[];
  /**
   * The attacks to run, given the attacker's copy of validation; attackVariants (the four adaptive
   * kinds against the primary) when absent.
   */
  variants?: (passes: (p: Float32Array) => boolean) => AttackVariant[];
  /** Profile-independent combined detectors, fitted at a rate on the calibration scores. */
  combined?: Array<{ name: string; fit: (calibration: InputScores[], rate: number) => Detector }>;
}

export interface DetectionCell {
  k: number;
  n: number;
  rate: number;
  interval: [number, number];
}

export interface AdaptiveRow {
  attack: string;
  eps: number;
  attempted: number;
  /** Attempts whose clean digit the primary classifies correctly (the base of the fooling rate). */
  cleanCorrect: number;
  successful: number;
  /** detector name -> rate -> detection among successful examples. */
  detection: Record<string, Record<number, DetectionCell>>;
}

export interface AdaptiveReport {
  rows: AdaptiveRow[];
  /** detector name -> rate -> false positives on the clean evaluation digits. */
  clean: Record<string, Record<number, DetectionCell>>;
  detectors: string[];
}

function cell(k: number, n: number): DetectionCell {
  return { k, n, rate: n === 0 ? Number.NaN : k / n, interval: wilsonInterval(k, n) };
}

function validationProfile(calibration: InputScores[], rate: number): Promise<GuardProfile> {
  return calibrateProfile({ samples: calibration.map((c) => ({ stats: c.stats })), fpr: rate });
}

/** Every stage alone at `rate`, the pipeline profile's verdict, extra and combined detectors. */
async function fitDetectors(
  o: AdaptiveEvalOptions,
  calibration: InputScores[],
  rate: number,
): Promise<Record<string, Detector>> {
  const validation = await validationProfile(calibration, rate);
  const confidence = lowerThresholdAtRate(
    calibration.map((c) => c.confidence),
    rate,
  );
  const upper = (pick: (c: InputScores) => number) => {
    const t = thresholdAtFpr(calibration.map(pick), rate);
    return (s: InputScores) => pick(s) > t;
  };
  const out: Record<string, Detector> = {
    validation: (s) => !validateStatistics(s.stats, validation, { dimensions: false, format: false }).passed,
    confidence: (s) => s.confidence < confidence,
    ensemble: upper((c) => c.ensemble),
    squeezing: upper((c) => c.squeeze),
  };
  for (const x of o.extra ?? []) out[x.name] = upper((c) => c.extra[x.name]!);
  out['pipeline, per-stage thresholds'] = (s) => s.detected.get(rate)!.perStage;
  out['pipeline, combiner (default)'] = (s) => s.detected.get(rate)!.combined;
  for (const c of o.combined ?? []) out[c.name] = c.fit(calibration, rate);
  return out;
}

async function scoreAll(
  images: Float32Array[],
  guards: Map<number, Guard>,
  extra: ExtraDetector[],
): Promise<InputScores[]> {
  const out: InputScores[] = [];
  for (const img of images) {
    const { image, tensor } = asInput(img);
    const detected: InputScores['detected'] = new Map();
    let first: GuardResult | undefined;
    for (const [rate, guard] of guards) {
      const r = await guard.check({ image, tensor });
      const st = r.stages;
      const perStage = [st.validation, st.confidence, st.ensemble, st.squeeze].some((x) => x && !x.passed);
      detected.set(rate, { combined: r.verdict !== 'accept', perStage });
      first ??= r;
    }
    const s = first!.stages;
    const scores: Record<string, number> = {};
    for (const x of extra) scores[x.name] = await x.score(tensor);
    out.push({
      stats: s.validation!.statistics,
      confidence: s.confidence!.value,
      ensemble: s.ensemble!.distance,
      squeeze: s.squeeze!.score,
      primaryIndex: first!.primary!.index,
      detected,
      extra: scores,
    });
  }
  return out;
}

function flat(rows: Float32Array[]): Float32Array {
  const out = new Float32Array(rows.length * MNIST_PIXELS);
  rows.forEach((r, i) => out.set(r, i * MNIST_PIXELS));
  return out;
}

function unflat(x: Float32Array): Float32Array[] {
  const out: Float32Array[] = [];
  for (let off = 0; off < x.length; off += MNIST_PIXELS) out.push(x.slice(off, off + MNIST_PIXELS));
  return out;
}

/** The attack variants: the non-adaptive BIM for reference, then the four adaptive ones per eps. */
export function attackVariants(
  o: Pick<AdaptiveEvalOptions, 'cnnTf' | 'mlpTf' | 'epsilons' | 'steps' | 'squeeze'>,
  passes: (p: Float32Array) => boolean,
): AttackVariant[] {
  const variants: AttackVariant[] = [
    { name: 'BIM, not adaptive', eps: 0.3, run: (x, y) => bim(o.cnnTf, x, y, 0.3, 0.06, 10) },
  ];
  const kinds = [
    { name: 'validation-aware', ensemble: false, squeeze: false },
    { name: 'validation + squeezing-aware', ensemble: false, squeeze: true },
    { name: 'validation + ensemble-aware', ensemble: true, squeeze: false },
    { name: 'validation + squeezing + ensemble-aware', ensemble: true, squeeze: true },
  ];
  for (const eps of o.epsilons)
    for (const k of kinds) {
      const models = k.ensemble ? [o.cnnTf, o.mlpTf] : [o.cnnTf];
      variants.push({
        name: k.name,
        eps,
        run: (x, y) =>
          adaptiveBim(
            {
              models,
              eps,
              steps: o.steps,
              ...(k.squeeze ? { squeezeAware: o.squeeze } : {}),
              passesValidation: passes,
            },
            x,
            runnerUpTargets(o.cnnTf, x, y),
          ),
      });
    }
  return variants;
}

function batched(run: AttackVariant['run'], images: Float32Array[], labels: number[], name: string): Float32Array[] {
  const out: Float32Array[] = [];
  const batch = 100;
  const t0 = Date.now();
  for (let i = 0; i < images.length; i += batch) {
    out.push(...unflat(run(flat(images.slice(i, i + batch)), labels.slice(i, i + batch))));
    process.stderr.write(
      `\r${name}: ${Math.min(i + batch, images.length)}/${images.length} (${((Date.now() - t0) / 1000).toFixed(0)} s)`,
    );
  }
  process.stderr.write('\n');
  return out;
}

export async function adaptiveEvaluation(o: AdaptiveEvalOptions): Promise<AdaptiveReport> {
  const extra = o.extra ?? [];
  const calStats = o.calibration.map((c) => ({
    stats: computeStatistics(asInput(c).image),
    tensor: asInput(c).tensor,
  }));
  const guards = new Map<number, Guard>();
  for (const rate of o.rates) {
    const profile = await calibrateProfile({
      samples: calStats,
      fpr: rate,
      primary: o.models.cnn,
      ensemble: o.models.mlp,
      shape: SHAPE,
      squeeze: o.squeeze,
    });
    guards.set(
      rate,
      new Guard({
        config: guardConfig({ shortCircuit: false }),
        profile,
        shape: SHAPE,
        primary: o.models.cnn,
        ensemble: o.models.mlp,
      }),
    );
  }
  const calibration = await scoreAll(o.calibration, guards, extra);
  const clean = await scoreAll(o.evaluation, guards, extra);
  const detectors = new Map<number, Record<string, Detector>>();
  for (const rate of o.rates) detectors.set(rate, await fitDetectors(o, calibration, rate));
  const names = Object.keys(detectors.get(o.rates[0]!)!);

  // The attacker's copy of validation: the tightest bounds evaluated (the stage alone at the largest rate).
  const attackerProfile = await validationProfile(calibration, Math.max(...o.rates));
  const passes = (p: Float32Array) =>
    validateStatistics(computeStatistics(floatImageToGuardImage(p, 28, 28)), attackerProfile, {
      dimensions: false,
      format: false,
    }).passed;

  const tally = (set: InputScores[]) =>
    Object.fromEntries(
      names.map((d) => [
        d,
        Object.fromEntries(
          o.rates.map((r) => [r, cell(set.filter((s) => detectors.get(r)![d]!(s)).length, set.length)]),
        ),
      ]),
    );

  const start = o.evaluation.slice(0, o.attackCount);
  const labels = o.evaluationLabels.slice(0, o.attackCount);
  const rows: AdaptiveRow[] = [];
  for (const v of o.variants ? o.variants(passes) : attackVariants(o, passes)) {
    const adv = batched(v.run, start, labels, `${v.name} eps ${v.eps}`);
    const scored = await scoreAll(adv, guards, extra);
    const successful = scored.filter((s, i) => clean[i]!.primaryIndex === labels[i] && s.primaryIndex !== labels[i]);
    rows.push({
      attack: v.name,
      eps: v.eps,
      attempted: adv.length,
      cleanCorrect: labels.filter((label, i) => clean[i]!.primaryIndex === label).length,
      successful: successful.length,
      detection: tally(successful),
    });
  }
  return { rows, clean: tally(clean), detectors: names };
}

function pct(x: number): string {
  return Number.isNaN(x) ? 'n/a' : `${(x * 100).toFixed(1)}%`;
}

function cellText(c: DetectionCell): string {
  return `${pct(c.rate)} (${pct(c.interval[0])}-${pct(c.interval[1])})`;
}

/** Markdown: one table per rate, attack x detector, detection with its 95% Wilson interval. */
export function adaptiveMarkdown(r: AdaptiveReport, rates: number[]): string {
  const lines: string[] = [];
  for (const rate of rates) {
    lines.push(`Detectors calibrated at ${pct(rate)} on the calibration digits; detection (95% Wilson interval):`);
    lines.push('');
    lines.push(`| attack | eps | fooled / tried | ${r.detectors.join(' | ')} |`);
    lines.push(`|---|---|---|${r.detectors.map(() => '---').join('|')}|`);
    for (const row of r.rows)
      lines.push(
        `| ${row.attack} | ${row.eps} | ${row.successful} / ${row.attempted} | ${r.detectors.map((d) => cellText(row.detection[d]![rate]!)).join(' | ')} |`,
      );
    const n = r.clean[r.detectors[0]!]![rate]!.n;
    lines.push(
      `| *clean evaluation digits (false positives)* | | ${n} | ${r.detectors.map((d) => cellText(r.clean[d]![rate]!)).join(' | ')} |`,
    );
    lines.push('');
  }
  return lines.join('\n');
}
