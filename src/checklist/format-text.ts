/** The human form: one line per item, then a summary and the score; ANSI colour only when asked. */
import { reportResults, type ChecklistReport } from './report.ts';
import type { CheckStatus } from './types.ts';

const COLOURS: Record<CheckStatus, string> = {
  PASS: '\x1b[32m',
  FAIL: '\x1b[31m',
  WARN: '\x1b[33m',
  'NOT-APPLICABLE': '\x1b[90m',
  'NOT-AVAILABLE': '\x1b[36m',
};
const RESET = '\x1b[0m';

export function formatChecklistText(report: ChecklistReport, opts: { colour: boolean }): string {
  const paint = (s: CheckStatus) => (opts.colour ? `${COLOURS[s]}${s.padEnd(14)}${RESET}` : s.padEnd(14));
  const lines: string[] = [];
  for (const r of reportResults(report)) {
    lines.push(`[${paint(r.status)}] ${r.id} ${r.desc}: ${r.actual}`);
    for (const e of r.evidence) lines.push(`      evidence: ${e.name} = ${e.value}${e.path ? ` (${e.path})` : ''}`);
    if (r.status === 'FAIL' || r.status === 'WARN') lines.push(`      remediation: ${r.remediation}`);
  }
  const t = report.totals;
  lines.push(
    '',
    `${t.PASS} pass, ${t.FAIL} fail, ${t.WARN} warn, ${t['NOT-APPLICABLE']} not applicable, ${t['NOT-AVAILABLE']} not available`,
    `score: ${report.score}/100`,
  );
  return lines.join('\n') + '\n';
}
