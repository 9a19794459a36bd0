/**
 * The checklist report as one JSON document, shaped like kube-bench's (controls -> tests ->
 * results, with totals), so tools that read kube-bench output find their way; docs/formats.md.
 */
import { checklistScore, countStatuses, type StatusCounts } from './run.ts';
import type { CheckResult, CheckStatus, Evidence } from './types.ts';

export const REPORT_TYPE = 'edgeguard-checklist';
export const CHECKLIST_VERSION = '1';

/** Items grouped as the sections of the report. */
const SECTIONS: Array<{ section: string; desc: string; ids: string[] }> = [
  { section: '1', desc: 'model and keys', ids: ['EG-01', 'EG-06'] },
  { section: '2', desc: 'boot chain', ids: ['EG-02', 'EG-07'] },
  { section: '3', desc: 'network', ids: ['EG-03', 'EG-04'] },
  { section: '4', desc: 'inference data and guard', ids: ['EG-05', 'EG-08'] },
  { section: '5', desc: 'physical and audit', ids: ['EG-09', 'EG-10'] },
];

export interface ReportResult {
  id: string;
  desc: string;
  audit: string;
  actual: string;
  expected: string;
  status: CheckStatus;
  remediation: string;
  evidence: Evidence[];
}

export interface ChecklistReport {
  type: typeof REPORT_TYPE;
  version: typeof CHECKLIST_VERSION;
  generatedAt: string;
  device: { bindingKey?: string; posture?: string };
  score: number;
  totals: StatusCounts;
  controls: Array<{
    id: string;
    text: string;
    node_type: 'device';
    tests: Array<{ section: string; desc: string; results: ReportResult[] }>;
  }>;
}

function toReportResult(r: CheckResult): ReportResult {
  return {
    id: r.id,
    desc: r.title,
    audit: r.audit,
    actual: r.actual,
    expected: r.expected,
    status: r.status,
    remediation: r.remediation,
    evidence: r.evidence,
  };
}

export function buildReport(
  results: readonly CheckResult[],
  device: ChecklistReport['device'],
  now = new Date(),
): ChecklistReport {
  const byId = new Map(results.map((r) => [r.id, r]));
  return {
    type: REPORT_TYPE,
    version: CHECKLIST_VERSION,
    generatedAt: now.toISOString(),
    device,
    score: checklistScore(results),
    totals: countStatuses(results),
    controls: [
      {
        id: 'EG',
        text: 'edgeguard edge-AI device checklist',
        node_type: 'device',
        tests: SECTIONS.map((s) => ({
          section: s.section,
          desc: s.desc,
          results: s.ids.flatMap((id) => (byId.has(id) ? [toReportResult(byId.get(id)!)] : [])),
        })),
      },
    ],
  };
}

/** Every result of a report, in item order. */
export function reportResults(report: ChecklistReport): ReportResult[] {
  return report.controls.flatMap((c) => c.tests.flatMap((t) => t.results)).sort((a, b) => a.id.localeCompare(b.id));
}
