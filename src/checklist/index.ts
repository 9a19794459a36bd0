/**
 * The edge-AI checklist (EG-01 .. EG-10) run on a device: each item probes what is enforced (the
 * binding key's policy, the live nft rule set, the spool's contents, the journal's chain), with
 * evidence, and the report in text, kube-bench-shaped JSON, JUnit XML and SARIF 2.1.0.
 *
 *   const results = await runChecklist({ deviceDir, configPath, config, root: '/', nft });
 *   const report = buildReport(results, { bindingKey, posture });
 */
export {
  CHECK_STATUSES,
  type CheckStatus,
  type CheckResult,
  type Evidence,
  type ChecklistAgentConfig,
  type ChecklistTarget,
} from './types.ts';
export { CHECKS, runChecklist, checklistScore, countStatuses, type StatusCounts } from './run.ts';
export {
  REPORT_TYPE,
  CHECKLIST_VERSION,
  buildReport,
  reportResults,
  type ChecklistReport,
  type ReportResult,
} from './report.ts';
export { formatChecklistText } from './format-text.ts';
export { formatChecklistJunit } from './format-junit.ts';
export { formatChecklistSarif, SARIF_SCHEMA_URI } from './format-sarif.ts';
export { REPORT_PAYLOAD_TYPE, signReport, verifySignedReport } from './signed-report.ts';
export { MAX_REPORT_BYTES, parseChecklistReport, failingItems } from './report-schema.ts';
