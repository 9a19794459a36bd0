/**
 * JUnit XML for CI dashboards (the de-facto schema of Ant's junit task, as read by Jenkins and
 * GitLab): one testcase per item; FAIL is a failure, NOT-APPLICABLE and NOT-AVAILABLE are skipped,
 * WARN passes with the warning in system-out.
 */
import { reportResults, type ChecklistReport, type ReportResult } from './report.ts';

/** XML 1.0 section 2.2 Char: most C0 controls cannot be carried at all, even escaped. */
function isXmlChar(c: string): boolean {
  const code = c.codePointAt(0)!;
  return code === 0x9 || code === 0xa || code === 0xd || (code >= 0x20 && code !== 0xfffe && code !== 0xffff);
}

export function escapeXml(text: string): string {
  return Array.from(text)
    .filter(isXmlChar)
    .join('')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

function details(r: ReportResult): string {
  const evidence = r.evidence.map((e) => `evidence: ${e.name} = ${e.value}${e.path ? ` (${e.path})` : ''}`);
  return [`audit: ${r.audit}`, `actual: ${r.actual}`, `expected: ${r.expected}`, ...evidence].join('\n');
}

function testcase(r: ReportResult): string {
  const open = `    <testcase classname="edgeguard.checklist" name="${escapeXml(`${r.id} ${r.desc}`)}">`;
  const body =
    r.status === 'FAIL'
      ? `      <failure message="${escapeXml(r.actual)}" type="FAIL">${escapeXml(`${details(r)}\nremediation: ${r.remediation}`)}</failure>`
      : r.status === 'PASS' || r.status === 'WARN'
        ? ''
        : `      <skipped message="${escapeXml(`${r.status}: ${r.actual}`)}"/>`;
  const out = `      <system-out>${escapeXml(`${r.status}\n${details(r)}`)}</system-out>`;
  return [open, ...(body ? [body] : []), out, '    </testcase>'].join('\n');
}

export function formatChecklistJunit(report: ChecklistReport): string {
  const results = reportResults(report);
  const t = report.totals;
  const skipped = t['NOT-APPLICABLE'] + t['NOT-AVAILABLE'];
  const counts = `tests="${results.length}" failures="${t.FAIL}" errors="0" skipped="${skipped}"`;
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="edgeguard checklist" ${counts}>`,
    `  <testsuite name="edgeguard checklist (score ${report.score}/100)" ${counts} timestamp="${report.generatedAt}">`,
    ...results.map(testcase),
    '  </testsuite>',
    '</testsuites>',
    '',
  ].join('\n');
}
