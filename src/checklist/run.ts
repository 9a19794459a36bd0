/**
 * Runs the ten items in order and scores them. A check that cannot run (its input is missing or
 * damaged) fails: the checklist never reports what it could not see as passing.
 */
import { isEdgeguardError } from '../errors/index.ts';
import { attestationBeforeUpdates, secureBoot } from './boot.ts';
import { guardCalibrated, inputNeverOnDisk } from './data.ts';
import { modelAtRest, signedUpdates } from './keys-and-models.ts';
import { egressRestricted, mutualTls } from './network.ts';
import { auditTamperEvident, tamperDetection } from './tamper-and-audit.ts';
import type { CheckDefinition, CheckResult, CheckStatus, ChecklistTarget } from './types.ts';

export const CHECKS: readonly CheckDefinition[] = [
  modelAtRest,
  secureBoot,
  egressRestricted,
  mutualTls,
  inputNeverOnDisk,
  signedUpdates,
  attestationBeforeUpdates,
  guardCalibrated,
  tamperDetection,
  auditTamperEvident,
];

export async function runCheck(check: CheckDefinition, target: ChecklistTarget): Promise<CheckResult> {
  const { run, ...definition } = check;
  try {
    const outcome = await run(target);
    return { ...definition, ...outcome, remediation: outcome.remediation ?? definition.remediation };
  } catch (e) {
    if (!isEdgeguardError(e)) throw e;
    return { ...definition, status: 'FAIL', actual: `could not be checked: ${e.code}: ${e.message}`, evidence: [] };
  }
}

export type StatusCounts = Record<CheckStatus, number>;

export function countStatuses(results: readonly CheckResult[]): StatusCounts {
  const counts: StatusCounts = { PASS: 0, FAIL: 0, WARN: 0, 'NOT-APPLICABLE': 0, 'NOT-AVAILABLE': 0 };
  for (const r of results) counts[r.status]++;
  return counts;
}

/**
 * 0-100: a pass counts 1, a warning 1/2, a failure and a missing capability 0, over the items that
 * apply (a missing capability is not protection, so it stays in the denominator).
 */
export function checklistScore(results: readonly CheckResult[]): number {
  const c = countStatuses(results);
  const applicable = results.length - c['NOT-APPLICABLE'];
  return applicable === 0 ? 100 : Math.round((100 * (c.PASS + c.WARN / 2)) / applicable);
}

export async function runChecklist(target: ChecklistTarget): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  for (const check of CHECKS) results.push(await runCheck(check, target));
  return results;
}
