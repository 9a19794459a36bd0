/**
 * The install reports the agent journals are files read back from the data directory: a report
 * whose members are not of their type ([{"toString":0}], which template literals cannot convert)
 * is journaled as a rejection with what can be read, never a TypeError that stops the agent.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { journalOutcomes } from '../../src/agent/update.ts';
import { pendingOutcomes, recordOutcome } from '../../src/release/index.ts';
import { tempDir } from '../helpers/workspace.ts';

test('journalOutcomes: a report with members String() cannot convert is journaled as a rejection', async (t) => {
  const dataDir = await tempDir(t);
  const hostile: unknown[] = [[{ toString: 0 }], { toString: 0, valueOf: 0 }];
  for (const v of hostile) {
    await recordOutcome(dataDir, { ok: v, release: { name: v, version: v }, error: { code: v, message: v } } as never);
  }
  await recordOutcome(dataDir, { ok: true, release: { kind: 'model', name: 'm', version: 3 } } as never);
  const records: Array<[string, string, Record<string, unknown>]> = [];
  const journal = {
    record: (type: string, outcome: string, details: Record<string, unknown>) => records.push([type, outcome, details]),
  };
  await journalOutcomes(dataDir, journal as never, 'dev-1');
  assert.deepEqual(records, [
    ['release.rejected', 'denied', { releaseId: 'unknown@unknown', deviceId: 'dev-1', reason: 'EG_INTERNAL: ' }],
    ['release.rejected', 'denied', { releaseId: 'unknown@unknown', deviceId: 'dev-1', reason: 'EG_INTERNAL: ' }],
    ['release.installed', 'success', { releaseId: 'm@3', deviceId: 'dev-1', version: '3' }],
  ]);
  assert.deepEqual(await pendingOutcomes(dataDir), [], 'every report was removed once journaled');
});
