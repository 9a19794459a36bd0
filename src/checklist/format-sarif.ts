/**
 * SARIF 2.1.0 (OASIS, errata 01): one rule per item, one result per item. Section 3.27.9: a result
 * whose kind is not "fail" has level "none"; failures are level error, warnings are kind fail with
 * level warning. NOT-AVAILABLE (the capability is absent) is kind "review": a person must look.
 */
import { reportResults, CHECKLIST_VERSION, type ChecklistReport, type ReportResult } from './report.ts';
import type { CheckStatus } from './types.ts';

export const SARIF_SCHEMA_URI =
  'https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json';

const KIND_AND_LEVEL: Record<CheckStatus, { kind: string; level: string }> = {
  PASS: { kind: 'pass', level: 'none' },
  FAIL: { kind: 'fail', level: 'error' },
  WARN: { kind: 'fail', level: 'warning' },
  'NOT-APPLICABLE': { kind: 'notApplicable', level: 'none' },
  'NOT-AVAILABLE': { kind: 'review', level: 'none' },
};

function rule(r: ReportResult) {
  return {
    id: r.id,
    name: r.desc.replace(/[^A-Za-z0-9]+(.)?/g, (_, c: string | undefined) => (c ? c.toUpperCase() : '')),
    shortDescription: { text: r.desc },
    fullDescription: { text: `${r.audit}. Expected: ${r.expected}.` },
    help: { text: r.remediation },
    defaultConfiguration: { level: 'error' },
  };
}

function result(r: ReportResult, ruleIndex: number) {
  return {
    ruleId: r.id,
    ruleIndex,
    ...KIND_AND_LEVEL[r.status],
    message: { text: `${r.status}: ${r.actual}` },
    properties: { status: r.status, actual: r.actual, expected: r.expected, evidence: r.evidence },
  };
}

export function formatChecklistSarif(report: ChecklistReport): object {
  const results = reportResults(report);
  return {
    $schema: SARIF_SCHEMA_URI,
    version: '2.1.0',
    runs: [
      {
        tool: {
          driver: {
            name: 'edgeguard checklist',
            version: CHECKLIST_VERSION,
            informationUri: 'https://github.com/edgeguard/edgeguard',
            rules: results.map(rule),
          },
        },
        invocations: [{ executionSuccessful: true, endTimeUtc: report.generatedAt }],
        results: results.map(result),
        properties: { score: report.score, device: report.device },
      },
    ],
  };
}
