/**
 * The calibrated combiner: one decision from every stage's continuous score, instead of one
 * threshold per stage (issue 17, item 2).
 *
 * Each component (a stage score, or one input statistic) turns its value into an empirical
 * p-value against the legitimate calibration inputs: the share of them at least as extreme,
 * +1-corrected (conformal p-value, Vovk et al., "Algorithmic Learning in a Random World", 2005,
 * chapter 2). The combined score is Fisher's statistic, the sum of -ln p over the components
 * (Fisher, "Statistical Methods for Research Workers", 1925, section 21.1). Under the per-stage
 * rule an input must be extreme on ONE score; Fisher's sum also catches an input that is
 * moderately unusual on several, which is what an attacker who keeps each score under its own
 * threshold produces. The components are not independent, so the chi-square law does not apply:
 * the threshold on the sum is calibrated empirically (calibrate.ts), with the same cross-validated
 * Clopper-Pearson rule as the per-stage pipeline.
 *
 * A p-value table stores the calibration values at most MAX_KNOTS ranks (every rank of the tail,
 * sparser in the bulk) so that a profile stays small; between knots ln p is interpolated linearly,
 * and beyond the most extreme knot it keeps falling exponentially (scale: the spread between the
 * median and that knot), so that inputs far outside still rank apart instead of all tying at
 * 1/(N+1).
 */
import { NUMERIC_STATISTICS, type InputStatistics, type NumericStatistic } from './stats.ts';

/**
 * Model-side components a profile may carry: the primary's top probability, the L1 distance to the
 * ensemble, and the L1 distance of each squeezed copy (bit depth, median) kept apart.
 */
export const MODEL_COMPONENTS = ['confidence', 'ensemble', 'squeezeBits', 'squeezeMedian'] as const;
export type ModelComponent = (typeof MODEL_COMPONENTS)[number];

/**
 * What calibration combines: the six statistics, the ensemble distance and both squeezing
 * distances. Not the confidence: measured on the adaptive attacks (docs/guard.md), it raised the
 * threshold, since the clean digits a small model is unsure of score high on it, and caught none
 * of the attacks, which are confidently wrong. A configured confidence.threshold still flags.
 */
export const COMBINED_MODEL_COMPONENTS = ['ensemble', 'squeezeBits', 'squeezeMedian'] as const;
export type ComponentName = ModelComponent | NumericStatistic;

/** Which tail is suspicious: high values, low values, or both. */
export type Tail = 'upper' | 'lower' | 'both';

export const COMPONENT_TAILS: Record<ComponentName, Tail> = {
  confidence: 'lower',
  ensemble: 'upper',
  squeezeBits: 'upper',
  squeezeMedian: 'upper',
  ...(Object.fromEntries(NUMERIC_STATISTICS.map((s) => [s, 'both'])) as Record<NumericStatistic, Tail>),
};

/** How many calibration values a table keeps, at most. */
export const MAX_KNOTS = 64;

/**
 * Upper-tail table of n calibration values: `values` ascending (6 significant digits), `atLeast[j]`
 * the number of calibration values >= values[j], so P(V >= values[j]) = (atLeast[j] + 1) / (n + 1).
 * A lower tail is the upper tail of the negated values.
 */
export interface TailTable {
  n: number;
  values: number[];
  atLeast: number[];
  /** Exponential decay scale beyond the largest value. */
  scale: number;
}

function round6(x: number): number {
  return Number(x.toPrecision(6));
}

/** The upper-tail table of `values` (at least 2, finite). */
export function fitTailTable(values: ArrayLike<number>): TailTable {
  const sorted = Float64Array.from(values, round6).sort();
  const n = sorted.length;
  const out: TailTable = { n, values: [], atLeast: [], scale: 0 };
  for (const r of knotRanks(n)) {
    const v = sorted[r]!;
    if (out.values.length > 0 && out.values[out.values.length - 1] === v) continue;
    let first = r; // every value >= v counts, ties included
    while (first > 0 && sorted[first - 1] === v) first--;
    out.values.push(v);
    out.atLeast.push(n - first);
  }
  out.scale = round6(Math.max(sorted[n - 1]! - sorted[Math.floor(n / 2)]!, 1e-6));
  return out;
}

/** Ranks to keep: the top half of MAX_KNOTS verbatim (the tail decides), the rest spread evenly below. */
function knotRanks(n: number): number[] {
  if (n <= MAX_KNOTS) return Array.from({ length: n }, (_, i) => i);
  const tail = MAX_KNOTS / 2;
  const ranks: number[] = [];
  const bulk = n - tail;
  for (let j = 0; j < MAX_KNOTS - tail; j++) ranks.push(Math.floor((j * bulk) / (MAX_KNOTS - tail)));
  for (let r = bulk; r < n; r++) ranks.push(r);
  return ranks;
}

/** P(V >= values[j]) of the table. */
function survival(t: TailTable, j: number): number {
  return (t.atLeast[j]! + 1) / (t.n + 1);
}

/** P(V >= x) under the table (1 at or below the smallest value). */
export function upperPValue(t: TailTable, x: number): number {
  const v = t.values;
  const last = v.length - 1;
  if (!(x > v[0]!)) return Number.isNaN(x) ? 0 : 1;
  if (x > v[last]!) return survival(t, last) * Math.exp(-(x - v[last]!) / t.scale);
  let lo = 0;
  let hi = last; // v[lo] < x <= v[hi]
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (v[mid]! < x) lo = mid;
    else hi = mid;
  }
  const f = (x - v[lo]!) / (v[hi]! - v[lo]!);
  return Math.exp((1 - f) * Math.log(survival(t, lo)) + f * Math.log(survival(t, hi)));
}

export interface ComponentTable {
  upper?: TailTable;
  lower?: TailTable;
}

export type CombinerTables = Partial<Record<ComponentName, ComponentTable>>;

/**
 * The p-value of one component value: the suspicious tail, or for a two-sided component twice the
 * smaller tail (capped at 1), and 0 when the value lies further outside the calibration range than
 * the range is wide. That last rule keeps inputs wildly unlike every calibration input (noise,
 * blank frames) rejected even when few calibration inputs leave the threshold high, as the
 * per-stage bounds did; calibration counts it on held-out inputs like any other score.
 */
export function componentPValue(table: ComponentTable, x: number): number {
  const up = table.upper ? upperPValue(table.upper, x) : undefined;
  const down = table.lower ? upperPValue(table.lower, -x) : undefined;
  if (up === undefined || down === undefined) return up ?? down ?? 1;
  const min = table.upper!.values[0]!;
  const max = table.upper!.values[table.upper!.values.length - 1]!;
  if (x < min - (max - min) || x > max + (max - min)) return 0;
  return Math.min(1, 2 * Math.min(up, down));
}

export type ComponentValues = Partial<Record<ComponentName, number>>;

/** Tables for every component present in all `samples` (each sample: component -> value). */
export function fitCombinerTables(samples: ComponentValues[], components: readonly ComponentName[]): CombinerTables {
  const tables: CombinerTables = {};
  for (const c of components) {
    const values = samples.map((s) => s[c]!);
    const tail = COMPONENT_TAILS[c];
    tables[c] = {
      ...(tail !== 'lower' ? { upper: fitTailTable(values) } : {}),
      ...(tail !== 'upper' ? { lower: fitTailTable(values.map((v) => -v)) } : {}),
    };
  }
  return tables;
}

export interface CombinedScore {
  /** Fisher's statistic: sum of -ln p over the components present. */
  score: number;
  /** -ln p per component present. */
  parts: ComponentValues;
}

/**
 * Fisher's statistic of one input over the components it has a value for; a component absent
 * (its stage disabled) adds nothing, which can only lower the score and so the false positives.
 * `known` are parts already computed (-ln p by component), taken as they are; the sum runs in the
 * tables' order either way, so the score does not depend on which parts were known.
 */
export function combinedScore(tables: CombinerTables, values: ComponentValues, known?: ComponentValues): CombinedScore {
  const parts: ComponentValues = {};
  let score = 0;
  for (const [name, table] of tableEntries(tables)) {
    let part = known?.[name];
    if (part === undefined) {
      const x = values[name];
      if (x === undefined) continue;
      part = -Math.log(Math.max(componentPValue(table, x), Number.MIN_VALUE));
    }
    parts[name] = part;
    score += part;
  }
  return { score, parts };
}

const entriesOf = new WeakMap<CombinerTables, Array<[ComponentName, ComponentTable]>>();

/** The tables' entries, listed once per tables object (a profile's are not changed after parsing). */
function tableEntries(tables: CombinerTables): Array<[ComponentName, ComponentTable]> {
  let entries = entriesOf.get(tables);
  if (!entries) {
    entries = Object.entries(tables) as Array<[ComponentName, ComponentTable]>;
    entriesOf.set(tables, entries);
  }
  return entries;
}

/** The component values of an input: its six statistics and the model scores given. */
export function componentValues(
  stats: InputStatistics | undefined,
  model: Partial<Record<ModelComponent, number>>,
): ComponentValues {
  const out: ComponentValues = { ...model };
  if (stats) for (const s of NUMERIC_STATISTICS) out[s] = stats[s];
  return out;
}
