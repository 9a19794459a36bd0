/**
 * Which primary to deploy (issue 17, item 4): the attacks that decide whether adversarial training
 * helps, run against one primary at a time (bench/guard-eval.ts --adaptive --primary FILE
 * --surrogates FILES), and the side-by-side tables of two such runs (--compare).
 *
 * Per eps, from each source model (the primary itself: white box; each surrogate: transfer, the
 * attacker has a model trained on similar data but not the primary's weights):
 *   - not adaptive: untargeted BIM, step eps/8, `steps` steps (scripts/lib/attacks.ts);
 *   - validation-aware: the targeted, stroke-only BIM that keeps every input statistic inside the
 *     attacker's copy of the calibrated bounds (scripts/lib/adaptive-attacks.ts).
 * The fooling rate's base is the attacked digits the primary classifies correctly when clean.
 */
import { basename } from 'node:path';
import type * as tf from '@tensorflow/tfjs';
import { adaptiveBim, runnerUpTargets } from '../../scripts/lib/adaptive-attacks.ts';
import { bim } from '../../scripts/lib/attacks.ts';
import type { AdaptiveReport, AdaptiveRow, AttackVariant, DetectionCell } from './adaptive-eval.ts';
import { wilsonInterval } from './wilson.ts';

export interface SourceModel {
  /** "white box" or "transfer from <file>". */
  name: string;
  model: tf.LayersModel;
}

export function sourceName(file: string | undefined): string {
  return file === undefined ? 'white box' : `transfer from ${basename(file, '.onnx')}`;
}

export function primaryVariants(
  sources: SourceModel[],
  epsilons: number[],
  steps: number,
): (passes: (p: Float32Array) => boolean) => AttackVariant[] {
  return (passes) =>
    sources.flatMap((src) =>
      epsilons.flatMap((eps): AttackVariant[] => [
        { name: `${src.name}, BIM`, eps, run: (x, y) => bim(src.model, x, y, eps, eps / 8, steps) },
        {
          name: `${src.name}, validation-aware`,
          eps,
          run: (x, y) =>
            adaptiveBim(
              { models: [src.model], eps, steps, passesValidation: passes },
              x,
              runnerUpTargets(src.model, x, y),
            ),
        },
      ]),
    );
}

export interface PrimaryRun {
  primary: string;
  report: AdaptiveReport;
}

function pct(x: number): string {
  return Number.isNaN(x) ? 'n/a' : `${(x * 100).toFixed(1)}%`;
}

function rateText(k: number, n: number): string {
  const [lo, hi] = wilsonInterval(k, n);
  return `${pct(n === 0 ? Number.NaN : k / n)} (${pct(lo)}-${pct(hi)}) ${k}/${n}`;
}

function cellText(c: DetectionCell | undefined): string {
  return c ? `${pct(c.rate)} (${pct(c.interval[0])}-${pct(c.interval[1])})` : 'n/a';
}

const COMBINER = 'pipeline, combiner (default)';

/**
 * One table, the primaries side by side: how often each attack fools each primary (share of the
 * attacked digits it classifies correctly when clean), the default pipeline's detection of the
 * examples that fool it at each rate, and the wrong answers that get through at the largest rate
 * (fooled and not detected, over the same base); 95% Wilson intervals. The last row gives the
 * false positives on the clean evaluation digits. Runs are matched by position (same --eps and
 * number of surrogates); differing attack names (each primary's own transfer source) read "a / b".
 */
export function comparisonMarkdown(runs: PrimaryRun[], rates: number[]): string {
  const head = runs.map((r) => basename(r.primary, '.onnx'));
  const last = Math.max(...rates);
  const columns: Array<{ title: string; cell: (r: AdaptiveRow) => string }> = [
    { title: 'fooled', cell: (r) => rateText(r.successful, r.cleanCorrect) },
    ...rates.map((rate) => ({
      title: `detected at ${pct(rate)}`,
      cell: (r: AdaptiveRow) => cellText(r.detection[COMBINER]?.[rate]),
    })),
    {
      title: `wrong answer accepted at ${pct(last)}`,
      cell: (r) => rateText(r.successful - (r.detection[COMBINER]?.[last]?.k ?? 0), r.cleanCorrect),
    },
  ];
  const titles = columns.flatMap((c) => head.map((h) => `${c.title}: ${h}`));
  const lines = [`| attack | eps | ${titles.join(' | ')} |`, `|---|---|${titles.map(() => '---').join('|')}|`];
  runs[0]!.report.rows.forEach((row, i) => {
    const at = runs.map((run) => run.report.rows[i]);
    const label = [...new Set(at.map((r) => r?.attack ?? '?'))].join(' / ');
    const cells = columns.flatMap((c) => at.map((r) => (r ? c.cell(r) : 'n/a')));
    lines.push(`| ${label} | ${row.eps} | ${cells.join(' | ')} |`);
  });
  const fp = rates.flatMap((rate) => runs.map((run) => cellText(run.report.clean[COMBINER]?.[rate])));
  lines.push(
    `| *clean evaluation digits (false positives)* | | ${head.map(() => '').join(' | ')} | ${fp.join(' | ')} | ${head.map(() => '').join(' | ')} |`,
  );
  return lines.join('\n');
}
