/**
 * A checklist report from outside (an upload, a file): the strict shape of report.ts, with every
 * string and list bounded, each item EG-01..EG-10 at most once, and the totals and score that the
 * statuses imply. A report whose score or totals disagree with its own items is refused: the
 * control plane stores and shows the score, so it must be the one the items earn.
 */
import { z } from 'zod';
import { EdgeguardError } from '../errors/index.ts';
import { CHECKLIST_VERSION, REPORT_TYPE, reportResults, type ChecklistReport } from './report.ts';
import { checklistScore, countStatuses } from './run.ts';
import { CHECK_STATUSES } from './types.ts';

/** The largest report accepted (evidence included), in bytes of JSON. */
export const MAX_REPORT_BYTES = 512 * 1024;

const text = (max: number) => z.string().max(max);
const count = z.number().int().min(0).max(10);

const evidence = z.strictObject({ name: text(200), value: text(16_384), path: text(4096).optional() });
const result = z.strictObject({
  id: z.string().regex(/^EG-(0[1-9]|10)$/),
  desc: text(200),
  audit: text(2000),
  actual: text(16_384),
  expected: text(2000),
  status: z.enum(CHECK_STATUSES),
  remediation: text(2000),
  evidence: z.array(evidence).max(64),
});

const reportSchema = z.strictObject({
  type: z.literal(REPORT_TYPE),
  version: z.literal(CHECKLIST_VERSION),
  generatedAt: z.iso.datetime(),
  device: z.strictObject({ bindingKey: text(200).optional(), posture: text(200).optional() }),
  score: z.number().int().min(0).max(100),
  totals: z.strictObject({
    PASS: count,
    FAIL: count,
    WARN: count,
    'NOT-APPLICABLE': count,
    'NOT-AVAILABLE': count,
  }),
  controls: z
    .array(
      z.strictObject({
        id: text(16),
        text: text(200),
        node_type: z.literal('device'),
        tests: z.array(z.strictObject({ section: text(8), desc: text(200), results: z.array(result).max(10) })).max(10),
      }),
    )
    .max(1),
});

/** The report `value` holds, checked; EG_FORMAT naming the first thing wrong otherwise. */
export function parseChecklistReport(value: unknown): ChecklistReport {
  const r = reportSchema.safeParse(value);
  if (!r.success) {
    const issue = r.error.issues[0];
    const at = issue?.path.join('.') ?? '';
    throw new EdgeguardError(
      'EG_FORMAT',
      `the checklist report is invalid${at ? ` at ${at}` : ''}: ${issue?.message ?? 'schema mismatch'}.`,
    );
  }
  const report = r.data as ChecklistReport;
  const results = reportResults(report).map((x) => ({ ...x, title: x.desc }));
  const ids = new Set(results.map((x) => x.id));
  if (ids.size !== results.length)
    throw new EdgeguardError('EG_FORMAT', 'the checklist report lists an item more than once.');
  const totals = countStatuses(results);
  if (CHECK_STATUSES.some((s) => totals[s] !== report.totals[s]))
    throw new EdgeguardError('EG_FORMAT', "the checklist report's totals do not match its items.");
  if (checklistScore(results) !== report.score)
    throw new EdgeguardError(
      'EG_FORMAT',
      `the checklist report's score ${report.score} is not the ${checklistScore(results)} its items earn.`,
    );
  return report;
}

/** The ids of the items that failed, in order. */
export function failingItems(report: ChecklistReport): string[] {
  return reportResults(report)
    .filter((r) => r.status === 'FAIL')
    .map((r) => r.id);
}
