/**
 * Latency of the adversarial-input guard (issue 5, item 5): p50/p99 of plain inference (the
 * baseline, measured in the same run), of each guard stage, and of the whole pipeline, on the
 * demo models in ONNX Runtime (one intra-op thread, the way the agent runs them) and evaluation
 * digits decoded from PNG bytes in memory.
 *
 * Run: npx tsx bench/guard.ts [--iterations 2000]
 */
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { decodeImage, pixelsToTensor } from '../src/inference/index.ts';
import {
  Guard,
  RECOMMENDED_SQUEEZERS,
  computeStatistics,
  guardConfig,
  squeezeScore,
  validateStatistics,
  type Classifier,
  type GuardImage,
} from '../src/guard/index.ts';
import { digitPixels } from '../scripts/lib/mnist-split.ts';
import { SHAPE, setUp } from './lib/guard-setup.ts';
import { machine } from './lib/machine.ts';

const { values: args } = parseArgs({ options: { iterations: { type: 'string', default: '2000' } } });
const ITER = Number(args.iterations);
const PRE = {
  type: 'image',
  colorSpace: 'grayscale',
  width: 28,
  height: 28,
  layout: 'NCHW',
  scale: 1 / 255,
  fit: 'fill',
} as const;

const PLAIN = 'plain inference: primary CNN (baseline)';

/** The same classifier without its batched form: the squeezed copies run as separate calls. */
function withoutBatch(c: Classifier): Classifier {
  return (input, inputs) => c(input, inputs);
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
}

interface Row {
  name: string;
  fn: (i: number) => Promise<unknown> | unknown;
}

interface Timing {
  name: string;
  p50: number;
  p99: number;
  mean: number;
}

/**
 * Every row timed round-robin (row 1, row 2, ..., row 1, ...) over the same inputs, so that load
 * from other processes falls on all rows alike and the ratios to plain inference hold on a busy
 * machine.
 */
async function measureInterleaved(rows: Row[], inputs: number): Promise<Timing[]> {
  for (let i = 0; i < Math.min(200, ITER); i++) for (const r of rows) await r.fn(i % inputs); // warm-up
  const t: number[][] = rows.map(() => []);
  for (let i = 0; i < ITER; i++) {
    for (let k = 0; k < rows.length; k++) {
      const s = performance.now();
      await rows[k]!.fn(i % inputs);
      t[k]!.push(performance.now() - s);
    }
  }
  return rows.map((r, k) => {
    const sorted = [...t[k]!].sort((a, b) => a - b);
    return {
      name: r.name,
      p50: quantile(sorted, 0.5),
      p99: quantile(sorted, 0.99),
      mean: sorted.reduce((a, b) => a + b, 0) / sorted.length,
    };
  });
}

async function main(): Promise<void> {
  // The default: a profile calibrated to a 4% pipeline budget, with its combiner and the recommended squeezers.
  const s = await setUp(0.04, undefined, 'cnn', RECOMMENDED_SQUEEZERS);
  const idx = s.split.evaluation.slice(0, 500);
  const pngs: Buffer[] = [];
  for (const i of idx) {
    const px = Buffer.from(Array.from(digitPixels(s.data, i), (v) => Math.round(v * 255)));
    pngs.push(
      await sharp(px, { raw: { width: 28, height: 28, channels: 1 } })
        .png()
        .toBuffer(),
    );
  }
  const decoded: Array<{ image: GuardImage; tensor: Float32Array }> = [];
  for (const p of pngs) {
    const image = await decodeImage(p, PRE);
    decoded.push({ image, tensor: pixelsToTensor(image, PRE).data });
  }
  const n = decoded.length;
  const guard = new Guard({
    config: guardConfig(),
    profile: s.profile,
    shape: SHAPE,
    primary: s.models.cnn,
    ensemble: s.models.mlp,
  });
  const perStage = new Guard({
    config: guardConfig({ combiner: { enabled: false } }),
    profile: s.profile,
    shape: SHAPE,
    primary: s.models.cnn,
    ensemble: s.models.mlp,
  });
  const unbatched = new Guard({
    config: guardConfig(),
    profile: s.profile,
    shape: SHAPE,
    primary: withoutBatch(s.models.cnn),
    ensemble: s.models.mlp,
  });
  const probs = await Promise.all(decoded.map((d) => s.models.cnn(d.tensor)));
  // Decoding runs on libuv's thread pool and would delay whichever row follows it: timed alone, first.
  const [decode] = await measureInterleaved(
    [
      {
        name: 'decode PNG + preprocess (sharp, in memory)',
        fn: async (i) => pixelsToTensor(await decodeImage(pngs[i]!, PRE), PRE),
      },
    ],
    n,
  );
  const rows = await measureInterleaved(
    [
      { name: PLAIN, fn: (i) => s.models.cnn(decoded[i]!.tensor) },
      {
        name: 'validation: statistics + profile check',
        fn: (i) => validateStatistics(computeStatistics(decoded[i]!.image), s.profile),
      },
      { name: 'ensemble: second model (MLP)', fn: (i) => s.models.mlp(decoded[i]!.tensor) },
      {
        name: 'squeezing: 1-bit + 3x3 median, 2 extra inferences (one batched run)',
        fn: (i) => squeezeScore(s.models.cnn, decoded[i]!.tensor, probs[i]!, SHAPE, RECOMMENDED_SQUEEZERS),
      },
      { name: 'whole guard pipeline, combiner (default; confidence is free)', fn: (i) => guard.check(decoded[i]!) },
      { name: 'whole guard pipeline, per-stage thresholds', fn: (i) => perStage.check(decoded[i]!) },
      { name: 'whole guard pipeline, combiner, primary unbatched', fn: (i) => unbatched.check(decoded[i]!) },
    ],
    n,
  );
  const plain = rows.find((r) => r.name === PLAIN)!;
  rows.unshift(decode!);
  const lines = [
    `Machine: ${machine({ load: true })}. ${ITER} iterations per row, rows interleaved, over ${n} evaluation digits, after 200 warm-up rounds; ONNX Runtime with 1 intra-op thread.`,
    '',
    '| step | p50 (ms) | p99 (ms) | mean (ms) | p50 / plain inference p50 |',
    '|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.name} | ${r.p50.toFixed(3)} | ${r.p99.toFixed(3)} | ${r.mean.toFixed(3)} | ${(r.p50 / plain.p50).toFixed(1)}x |`,
    ),
  ];
  console.log(lines.join('\n'));
  for (const x of s.models.sessions) await x.release();
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
