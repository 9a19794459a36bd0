/**
 * Evaluation of the adversarial-input guard (issue 5, item 4): on the demo models and the
 * held-out evaluation digits, FGSM (eps 0.3) and BIM (eps 0.3, step 0.06, 10 steps) adversarial
 * examples made with TensorFlow.js gradients against the primary model (the CNN, white box), and
 * out-of-distribution sets. For every set: detection rate at the calibrated thresholds and
 * ROC-AUC against the clean evaluation digits, per stage and for the whole pipeline.
 *
 * Thresholds and bounds are calibrated on the calibration split only (scripts/lib/mnist-split.ts);
 * every rate below is measured on the evaluation split, which neither training nor calibration saw.
 *
 * Three detectors are compared: the guard as configured by default with a profile calibrated to
 * a pipeline budget (`--fpr`, the default of `edgeguard guard calibrate`); the same guard with a
 * per-stage profile and the seed's rules (validation at --stage-fpr, squeezing at --squeeze-fpr,
 * confidence 0.85, argmax disagreement); and the benchmark-only joint detector.
 *
 * The default pipeline decides with its calibrated combiner (a version-3 profile); its per-stage
 * thresholds are reported beside it. Squeezers: 1-bit and a --median k x k median (default 3).
 *
 * Run: npx tsx bench/guard-eval.ts [--fpr 0.04] [--fpr-confidence 0.95] [--stage-fpr 0.01] [--squeeze-fpr 0.02] [--joint-fpr 0.04] [--median 3] [--json out.json]
 * (about 3 minutes on 2 cores, most of it the TensorFlow.js cpu backend computing gradients).
 *
 * Adaptive attacks (bench/lib/adaptive-eval.ts), instead of the above:
 *   npx tsx bench/guard-eval.ts --adaptive [--attack-count 500] [--eps 0.1,0.2,0.3] [--steps 20] [--candidates] [--json out.json]
 * --candidates adds the detectors measured before choosing (bench/lib/candidate-detectors.ts).
 *
 * Another primary (every mode; the guard profile is calibrated for it on the calibration digits):
 *   --primary fixtures/models/mnist-cnn-pgd.onnx   (default: fixtures/models/mnist-cnn.onnx)
 * With --adaptive --surrogates FILE[,FILE], the attacks are those that compare primaries
 * (bench/lib/primary-eval.ts): BIM and validation-aware, white box and transferred from each
 * surrogate, at every --eps. --compare a.json,b.json prints two such --json reports side by side.
 *
 * Black-box query attack against the agent's HTTP service (bench/lib/blackbox-eval.ts), with and
 * without its probing defence:
 *   npx tsx bench/guard-eval.ts --blackbox [--attack-count 50] [--query-budget 1000] [--json out.json]
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import {
  Guard,
  calibrateProfile,
  computeStatistics,
  guardConfig,
  rateUpperBound,
  thresholdAtFpr,
  RECOMMENDED_SQUEEZERS,
  type Classifier,
  type GuardResult,
} from '../src/guard/index.ts';
import { loadTfFromOnnx } from '../scripts/lib/demo-models.ts';
import { bim, fgsm } from '../scripts/lib/attacks.ts';
import { digitPixels, loadMnist, mnistSplit, MNIST_PIXELS, type MnistData } from '../scripts/lib/mnist-split.ts';
import { DEFAULT_PRIMARY, ROOT, SHAPE, asInput, loadDemoModels } from './lib/guard-setup.ts';
import { comparisonMarkdown, primaryVariants, sourceName, type PrimaryRun } from './lib/primary-eval.ts';
import { blank, drawnLetters, drawnShapes, gaussianNoise, heavyBlur, inverted, uniformNoise } from './lib/ood.ts';
import { rocAuc } from './lib/roc.ts';
import { adaptiveEvaluation, adaptiveMarkdown, type ExtraDetector } from './lib/adaptive-eval.ts';
import { blackboxEvaluation, blackboxMarkdown } from './lib/blackbox-eval.ts';
import {
  autoencoderDetector,
  bits2,
  fisherCombiner,
  mahalanobisDetector,
  median3,
  squeezerDetector,
} from './lib/candidate-detectors.ts';

const { values: args } = parseArgs({
  options: {
    fpr: { type: 'string', default: '0.04' },
    'fpr-confidence': { type: 'string', default: '0.95' },
    'stage-fpr': { type: 'string', default: '0.01' },
    'squeeze-fpr': { type: 'string', default: '0.02' },
    'joint-fpr': { type: 'string', default: '0.04' },
    json: { type: 'string' },
    limit: { type: 'string' },
    adaptive: { type: 'boolean', default: false },
    'attack-count': { type: 'string', default: '500' },
    eps: { type: 'string', default: '0.1,0.2,0.3' },
    steps: { type: 'string', default: '20' },
    candidates: { type: 'boolean', default: false },
    blackbox: { type: 'boolean', default: false },
    'query-budget': { type: 'string', default: '1000' },
    median: { type: 'string', default: String(RECOMMENDED_SQUEEZERS.medianSize) },
    primary: { type: 'string', default: DEFAULT_PRIMARY },
    surrogates: { type: 'string' },
    compare: { type: 'string' },
  },
});
const FPR = Number(args.fpr);
const FPR_CONFIDENCE = Number(args['fpr-confidence']);
const STAGE_FPR = Number(args['stage-fpr']);
const SQUEEZE_FPR = Number(args['squeeze-fpr']);
const JOINT_FPR = Number(args['joint-fpr']);

const ADAPTIVE_RATES = [0.01, 0.04];
const SQUEEZERS = { bitDepth: RECOMMENDED_SQUEEZERS.bitDepth, medianSize: Number(args.median) };

const STAGES = ['validation', 'confidence', 'ensemble', 'squeeze'] as const;
type Stage = (typeof STAGES)[number];

interface Scored {
  /** Continuous anomaly score per stage (higher = more suspicious). */
  score: Record<Stage, number>;
  /** Whether each stage fired at its configured threshold. */
  fired: Record<Stage, boolean>;
  verdict: GuardResult['verdict'];
  primaryIndex: number;
}

function scoreOf(r: GuardResult): Scored {
  const s = r.stages;
  return {
    score: {
      validation: s.validation!.score,
      confidence: 1 - s.confidence!.value,
      ensemble: s.ensemble!.distance,
      squeeze: s.squeeze!.score,
    },
    fired: {
      validation: !s.validation!.passed,
      confidence: !s.confidence!.passed,
      ensemble: !s.ensemble!.passed,
      squeeze: !s.squeeze!.passed,
    },
    verdict: r.verdict,
    primaryIndex: r.primary!.index,
  };
}

async function runGuard(guard: Guard, images: Float32Array[]): Promise<Scored[]> {
  const out: Scored[] = [];
  for (const img of images) {
    const { image, tensor } = asInput(img);
    out.push(scoreOf(await guard.check({ image, tensor })));
  }
  return out;
}

/**
 * Empirical survival function of the calibration scores, as a p-value per stage: P(S >= x) with
 * the +1 correction; beyond the largest calibration score it decays exponentially (scale: the
 * spread between the median and the maximum), so that scores far outside still rank apart
 * instead of all tying at 1/(N+1).
 */
function survival(calibration: number[]): (x: number) => number {
  const sorted = [...calibration].sort((a, b) => a - b);
  const n = sorted.length;
  const max = sorted[n - 1]!;
  const scale = Math.max(max - sorted[Math.floor(n / 2)]!, 1e-9);
  return (x) => {
    if (x > max) return Math.exp(-(x - max) / scale) / (n + 1);
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (sorted[mid]! < x) lo = mid + 1;
      else hi = mid;
    }
    return (n - lo + 1) / (n + 1);
  };
}

function pct(x: number): string {
  return Number.isNaN(x) ? 'n/a' : `${(x * 100).toFixed(2)}%`;
}

async function attackSet(
  name: 'FGSM' | 'BIM',
  model: tf.LayersModel,
  images: Float32Array[],
  labels: number[],
): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  const batch = 250;
  const t0 = Date.now();
  for (let i = 0; i < images.length; i += batch) {
    const chunk = images.slice(i, i + batch);
    const flat = new Float32Array(chunk.length * MNIST_PIXELS);
    chunk.forEach((c, k) => flat.set(c, k * MNIST_PIXELS));
    const lab = labels.slice(i, i + batch);
    const adv = name === 'FGSM' ? fgsm(model, flat, lab, 0.3) : bim(model, flat, lab, 0.3, 0.06, 10);
    for (let k = 0; k < chunk.length; k++) out.push(adv.slice(k * MNIST_PIXELS, (k + 1) * MNIST_PIXELS));
    process.stderr.write(
      `\r${name}: ${Math.min(i + batch, images.length)}/${images.length} (${((Date.now() - t0) / 1000).toFixed(0)} s)`,
    );
  }
  process.stderr.write('\n');
  return out;
}

async function candidates(
  cnnTf: tf.Sequential,
  primary: Classifier,
  data: MnistData,
  train: number[],
): Promise<ExtraDetector[]> {
  const rows = new Float32Array(train.length * MNIST_PIXELS);
  train.forEach((idx, i) => rows.set(digitPixels(data, idx), i * MNIST_PIXELS));
  return [
    mahalanobisDetector(
      cnnTf,
      rows,
      train.map((idx) => data.labels[idx]!),
    ),
    await autoencoderDetector(rows),
    squeezerDetector('median 3x3', primary, median3),
    squeezerDetector('2-bit', primary, bits2),
  ];
}

/** The adaptive evaluation only (--adaptive): attacks that know the guard, at 1% and 4% false positives. */
async function adaptiveMain(): Promise<void> {
  const data = loadMnist();
  const split = mnistSplit(data.count);
  const models = await loadDemoModels(args.primary);
  const tfModel = (file: string) => loadTfFromOnnx(readFileSync(join(ROOT, file)), 'linear').model;
  const cnnTf = tfModel(args.primary!);
  const sources = args.surrogates
    ? [
        { name: sourceName(undefined), model: cnnTf },
        ...args.surrogates.split(',').map((f) => ({ name: sourceName(f), model: tfModel(f) })),
      ]
    : undefined;
  const epsilons = args.eps!.split(',').map(Number);
  const extra = args.candidates ? await candidates(cnnTf, models.cnn, data, split.train) : [];
  const report = await adaptiveEvaluation({
    models,
    cnnTf,
    extra,
    combined: args.candidates
      ? [
          fisherCombiner('Fisher (model stages)', [], false),
          fisherCombiner(
            'Fisher (model stages + candidates)',
            extra.map((e) => e.name),
            false,
          ),
          fisherCombiner(
            'Fisher (all)',
            extra.map((e) => e.name),
            true,
          ),
        ]
      : [],
    mlpTf: tfModel('fixtures/models/mnist-mlp.onnx'),
    ...(sources ? { variants: primaryVariants(sources, epsilons, Number(args.steps)) } : {}),
    calibration: split.calibration.map((idx) => Float32Array.from(digitPixels(data, idx))),
    evaluation: split.evaluation.map((idx) => Float32Array.from(digitPixels(data, idx))),
    evaluationLabels: split.evaluation.map((idx) => data.labels[idx]!),
    attackCount: Number(args['attack-count']),
    rates: ADAPTIVE_RATES,
    epsilons,
    steps: Number(args.steps),
    squeeze: SQUEEZERS,
  });
  const run: PrimaryRun = { primary: args.primary!, report };
  if (args.json) writeFileSync(args.json, JSON.stringify(sources ? run : report, null, 2) + '\n');
  console.log(adaptiveMarkdown(report, ADAPTIVE_RATES));
  for (const s of models.sessions) await s.release();
}

/** The black-box query attack only (--blackbox): SimBA over HTTP, without and with the probing defence. */
async function blackboxMain(): Promise<void> {
  const data = loadMnist();
  const split = mnistSplit(data.count);
  const count = Number(args['attack-count']);
  const budget = Number(args['query-budget']);
  const digits = split.evaluation.slice(0, count);
  const runs = await blackboxEvaluation({
    digits: digits.map((idx) => Float32Array.from(digitPixels(data, idx))),
    labels: digits.map((idx) => data.labels[idx]!),
    // Decoys: other evaluation digits, never attacked.
    decoys: split.evaluation.slice(1000, 1200).map((idx) => Float32Array.from(digitPixels(data, idx))),
    runs: [
      { name: 'probing defence off', probing: { enabled: false }, decoys: 0 },
      { name: 'probing defence on (defaults)', probing: {}, decoys: 0 },
      { name: 'probing defence on (defaults)', probing: {}, decoys: 4 },
    ],
    settings: { budget, step: 0.2, eps: 0.3, seed: 17 },
  });
  if (args.json) writeFileSync(args.json, JSON.stringify(runs, null, 2) + '\n');
  const checkpoints = [100, 250, 500, 1000, 2000, 5000].filter((q) => q <= budget);
  console.log(blackboxMarkdown(runs, checkpoints));
}

async function main(): Promise<void> {
  await tf.setBackend('cpu');
  if (args.adaptive) return adaptiveMain();
  if (args.blackbox) return blackboxMain();
  if (args.compare) {
    const runs = args.compare.split(',').map((f) => JSON.parse(readFileSync(f, 'utf8')) as PrimaryRun);
    return console.log(comparisonMarkdown(runs, ADAPTIVE_RATES));
  }
  const data = loadMnist();
  const split = mnistSplit(data.count);
  const evalIdx = args.limit ? split.evaluation.slice(0, Number(args.limit)) : split.evaluation;
  const models = await loadDemoModels(args.primary);

  // 1. Calibrate on the calibration split only.
  const calSamples = split.calibration.map((idx) => {
    const { image, tensor } = asInput(digitPixels(data, idx));
    return { stats: computeStatistics(image), tensor };
  });
  const common = {
    samples: calSamples,
    primary: models.cnn,
    ensemble: models.mlp,
    shape: SHAPE,
    squeeze: SQUEEZERS,
  };
  const profile = await calibrateProfile({ ...common, fpr: FPR, fprConfidence: FPR_CONFIDENCE });
  const guard = new Guard({
    config: guardConfig({ shortCircuit: false }),
    profile,
    shape: SHAPE,
    primary: models.cnn,
    ensemble: models.mlp,
  });
  // The per-stage profile with the seed's fixed rules (0.85, argmax disagreement), for comparison.
  const stageProfile = await calibrateProfile({ ...common, pipeline: false, fpr: STAGE_FPR, squeezeFpr: SQUEEZE_FPR });
  const stageGuard = new Guard({
    config: guardConfig({ shortCircuit: false }),
    profile: stageProfile,
    shape: SHAPE,
    primary: models.cnn,
    ensemble: models.mlp,
  });
  const pl = profile.pipeline!;
  process.stderr.write(
    `pipeline profile: stage rate ${pl.stageRate.toFixed(4)}, confidence ${pl.confidenceThreshold.toFixed(4)}, ensemble L1 ${pl.ensembleThreshold?.toFixed(4)}, squeeze ${profile.squeeze!.threshold.toFixed(4)}, validation tail ${profile.validation.tail.toFixed(5)}; cross-validated FPR ${pct(pl.crossValidatedFpr)} (upper bound ${pct(pl.upperBound)}), in-sample ${pct(pl.measuredFpr)}\n`,
  );
  const calScores = await runGuard(
    guard,
    split.calibration.map((idx) => digitPixels(data, idx)),
  );
  const pvals = Object.fromEntries(STAGES.map((s) => [s, survival(calScores.map((c) => c.score[s]))])) as Record<
    Stage,
    (x: number) => number
  >;
  // Joint detector: the smallest per-stage p-value, as -log p; threshold at JOINT_FPR on calibration.
  const joint = (x: Scored) => Math.max(...STAGES.map((s) => -Math.log(pvals[s](x.score[s]))));
  const jointThreshold = thresholdAtFpr(calScores.map(joint), JOINT_FPR);

  // 2. The sets, all built from evaluation digits or synthetic.
  const evalImages = evalIdx.map((idx) => Float32Array.from(digitPixels(data, idx)));
  const evalLabels = evalIdx.map((idx) => data.labels[idx]!);
  const clean = await runGuard(guard, evalImages);
  const cleanStage = await runGuard(stageGuard, evalImages);
  const cleanCorrect = clean.map((c, i) => c.primaryIndex === evalLabels[i]);

  const cnnTf = loadTfFromOnnx(readFileSync(join(ROOT, args.primary!)), 'linear').model;
  const sets: Array<{ name: string; images: Float32Array[]; note: string; keep?: (s: Scored, i: number) => boolean }> =
    [];
  for (const attack of ['FGSM', 'BIM'] as const) {
    const adv = await attackSet(attack, cnnTf, evalImages, evalLabels);
    sets.push({
      name: attack === 'FGSM' ? 'FGSM eps 0.3' : 'BIM eps 0.3 step 0.06',
      images: adv,
      note: 'successful examples only: the clean digit was classified correctly and the adversarial one is not',
      keep: (s, i) => cleanCorrect[i]! && s.primaryIndex !== evalLabels[i],
    });
  }
  const ood = evalImages.slice(0, 1000);
  sets.push({ name: 'Gaussian noise', images: gaussianNoise(1000, 11), note: 'N(0.5, 1) clipped to [0,1]' });
  sets.push({ name: 'uniform noise', images: uniformNoise(1000, 12), note: 'U[0,1]' });
  sets.push({ name: 'inverted digits', images: inverted(ood), note: '1 - x' });
  sets.push({ name: 'blank', images: blank(101), note: 'constant images 0, 0.01, ..., 1' });
  sets.push({ name: 'heavy blur', images: heavyBlur(ood, 2.5), note: 'Gaussian blur sigma 2.5 px' });
  sets.push({
    name: 'drawn letters',
    images: drawnLetters(650, 13),
    note: '13 stroke letters, random size, slant, pen',
  });
  sets.push({ name: 'drawn shapes', images: drawnShapes(500, 14), note: 'circles, rectangles, triangles, crosses' });

  // 3. Rates and AUCs.
  const cleanFpr = Object.fromEntries(
    STAGES.map((s) => [s, clean.filter((c) => c.fired[s]).length / clean.length]),
  ) as Record<Stage, number>;
  const cleanPipeline = clean.filter((c) => c.verdict !== 'accept').length / clean.length;
  const anyStage = (c: Scored) => STAGES.some((st) => c.fired[st]);
  const cleanPipelineStages = clean.filter(anyStage).length / clean.length;
  const cleanJoint = clean.filter((c) => joint(c) > jointThreshold).length / clean.length;
  const cleanFlagged = clean.filter((c) => c.verdict !== 'accept').length;
  const cleanInterval = [
    1 - rateUpperBound(clean.length - cleanFlagged, clean.length, 0.975),
    rateUpperBound(cleanFlagged, clean.length, 0.975),
  ] as const;
  const cleanStageFpr = Object.fromEntries(
    STAGES.map((s) => [s, cleanStage.filter((c) => c.fired[s]).length / cleanStage.length]),
  ) as Record<Stage, number>;
  const cleanPerStage = cleanStage.filter((c) => c.verdict !== 'accept').length / cleanStage.length;
  const results: Array<Record<string, unknown>> = [];
  for (const set of sets) {
    let scored = await runGuard(guard, set.images);
    let stageScored = await runGuard(stageGuard, set.images);
    const attempted = scored.length;
    if (set.keep) {
      stageScored = stageScored.filter((_, i) => set.keep!(scored[i]!, i));
      scored = scored.filter((s, i) => set.keep!(s, i));
    }
    const row: Record<string, unknown> = { set: set.name, note: set.note, n: scored.length, attempted };
    for (const s of STAGES) {
      row[`${s}.detected`] = scored.filter((x) => x.fired[s]).length / scored.length;
      row[`${s}.auc`] = rocAuc(
        scored.map((x) => x.score[s]),
        clean.map((x) => x.score[s]),
      );
    }
    row['pipeline.detected'] = scored.filter((x) => x.verdict !== 'accept').length / scored.length;
    row['pipeline.rejected'] = scored.filter((x) => x.verdict === 'reject').length / scored.length;
    row['pipelineStages.detected'] = scored.filter(anyStage).length / scored.length;
    row['perStage.detected'] = stageScored.filter((x) => x.verdict !== 'accept').length / stageScored.length;
    row['joint.detected'] = scored.filter((x) => joint(x) > jointThreshold).length / scored.length;
    row['joint.auc'] = rocAuc(scored.map(joint), clean.map(joint));
    results.push(row);
    process.stderr.write(`${set.name}: done\n`);
  }

  const accepted = clean.filter((c) => c.verdict === 'accept');
  const acceptedCorrect = clean.filter((c, i) => c.verdict === 'accept' && c.primaryIndex === evalLabels[i]).length;
  const summary = {
    evaluationDigits: evalIdx.length,
    calibration: {
      digits: split.calibration.length,
      pipeline: { ...pl, squeezeThreshold: profile.squeeze!.threshold, validationTail: profile.validation.tail },
      perStage: {
        validationFpr: STAGE_FPR,
        squeezeFpr: SQUEEZE_FPR,
        squeezeThreshold: stageProfile.squeeze!.threshold,
        validationTail: stageProfile.validation.tail,
        confidenceThreshold: 0.85,
      },
      jointFpr: JOINT_FPR,
    },
    cleanFalsePositives: {
      ...cleanFpr,
      pipeline: cleanPipeline,
      pipelineStages: cleanPipelineStages,
      pipeline95: cleanInterval,
      joint: cleanJoint,
      perStage: { ...cleanStageFpr, pipeline: cleanPerStage },
    },
    cleanAccuracy: {
      primary: cleanCorrect.filter(Boolean).length / clean.length,
      acceptedAnswersCorrect: acceptedCorrect / Math.max(1, accepted.length),
      accepted: accepted.length / clean.length,
    },
    sets: results,
  };
  if (args.json) writeFileSync(args.json, JSON.stringify(summary, null, 2) + '\n');

  // 4. Markdown for docs/guard.md.
  const lines: string[] = [];
  lines.push(
    `Pipeline profile (--fpr ${FPR}, --fpr-confidence ${FPR_CONFIDENCE}): per-stage rate ${pl.stageRate.toFixed(4)}; confidence threshold ${pl.confidenceThreshold.toFixed(3)}; ensemble L1 threshold ${pl.ensembleThreshold?.toFixed(3)}; squeezing threshold ${profile.squeeze!.threshold.toFixed(3)}; validation tail ${profile.validation.tail.toFixed(5)}; cross-validated FPR on the calibration digits ${pct(pl.crossValidatedFpr)} (upper bound ${pct(pl.upperBound)}), in-sample ${pct(pl.measuredFpr)}.`,
  );
  lines.push('');
  lines.push(
    `Clean evaluation digits (n = ${clean.length}): primary accuracy ${pct(summary.cleanAccuracy.primary)}; false positives of the default pipeline ${pct(cleanPipeline)} (95% interval ${pct(cleanInterval[0])} to ${pct(cleanInterval[1])}): validation ${pct(cleanFpr.validation)}, confidence ${pct(cleanFpr.confidence)}, ensemble ${pct(cleanFpr.ensemble)}, squeezing ${pct(cleanFpr.squeeze)}. Per-stage profile with the seed's rules: ${pct(cleanPerStage)} (validation ${pct(cleanStageFpr.validation)}, confidence < 0.85 ${pct(cleanStageFpr.confidence)}, argmax disagreement ${pct(cleanStageFpr.ensemble)}, squeezing ${pct(cleanStageFpr.squeeze)}). Joint detector ${pct(cleanJoint)}. Accepted answers correct: ${pct(summary.cleanAccuracy.acceptedAnswersCorrect)} (${pct(summary.cleanAccuracy.accepted)} accepted).`,
  );
  lines.push('');
  lines.push('Detection rate (share of the set flagged or rejected) at the calibrated thresholds:');
  lines.push('');
  lines.push(
    '| set | n | validation | confidence | ensemble | squeezing | **pipeline (default: combiner)** | pipeline, per-stage thresholds | per-stage, seed rules | joint |',
  );
  lines.push('|---|---|---|---|---|---|---|---|---|---|');
  for (const r of results) {
    lines.push(
      `| ${r.set} | ${r.n} | ${STAGES.map((s) => pct(r[`${s}.detected`] as number)).join(' | ')} | **${pct(r['pipeline.detected'] as number)}** | ${pct(r['pipelineStages.detected'] as number)} | ${pct(r['perStage.detected'] as number)} | ${pct(r['joint.detected'] as number)} |`,
    );
  }
  lines.push(
    `| *clean digits (false positives)* | ${clean.length} | ${STAGES.map((s) => pct(cleanFpr[s])).join(' | ')} | **${pct(cleanPipeline)}** | ${pct(cleanPipelineStages)} | ${pct(cleanPerStage)} | ${pct(cleanJoint)} |`,
  );
  lines.push('');
  lines.push("ROC-AUC of each stage's continuous score against the clean evaluation digits:");
  lines.push('');
  lines.push('| set | validation | confidence (max-softmax) | ensemble (L1) | squeezing (L1) | joint |');
  lines.push('|---|---|---|---|---|---|');
  for (const r of results) {
    lines.push(
      `| ${r.set} | ${STAGES.map((s) => pct(r[`${s}.auc`] as number)).join(' | ')} | ${pct(r['joint.auc'] as number)} |`,
    );
  }
  console.log(lines.join('\n'));
  for (const s of models.sessions) await s.release();
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
