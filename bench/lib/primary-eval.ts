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
 * Two tables: how often each attack fools each primary (share of the correctly classified digits,
 * 95% Wilson interval), and the default pipeline's detection of the examples that fool it at each
 * rate; a last row gives the false positives on the clean evaluation digits. The runs' attacks are
 * matched by position (same --eps and the same number of surrogates); differing names (each
 * primary's own transfer source) are shown as "a / b".
 */
export function comparisonMarkdown(runs: PrimaryRun[], rates: number[]): string {
  const lines: string[] = [];
  const head = runs.map((r) => basename(r.primary, '.onnx'));
  const rows = runs[0]!.report.rows.map((row, i) => {
    const names = [...new Set(runs.map((run) => run.report.rows[i]?.attack ?? '?'))];
    return { label: names.join(' / '), eps: row.eps, at: runs.map((run) => run.report.rows[i]) };
  });
  const table = (title: string, cell: (r: AdaptiveRow | undefined) => string, footer?: string) => {
    lines.push(title, '', `| attack | eps | ${head.join(' | ')} |`, `|---|---|${head.map(() => '---').join('|')}|`);
    for (const row of rows) lines.push(`| ${row.label} | ${row.eps} | ${row.at.map(cell).join(' | ')} |`);
    if (footer) lines.push(footer);
    lines.push('');
  };
  table(
    'Attacks that fool the primary (share of the attacked digits it classifies correctly when clean, 95% interval):',
    (r) => (r ? rateText(r.successful, r.cleanCorrect) : 'n/a'),
  );
  for (const rate of rates)
    table(
      `Detection by the default pipeline (combiner, calibrated at ${pct(rate)}) of the examples that fool each primary:`,
      (r) => cellText(r?.detection[COMBINER]?.[rate]),
      `| *clean evaluation digits (false positives)* | | ${runs.map((run) => cellText(run.report.clean[COMBINER]?.[rate])).join(' | ')} |`,
    );
  return lines.join('\n');
}
