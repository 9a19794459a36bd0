/**
 * The install reports the agent journals are files read back from the data directory: a report
 * whose members are not of their type ([{"toString":0}], which template literals cannot convert)
 * is journaled as a rejection with what can be read, never a TypeError that stops the agent. The
 * events go through the real signed journal, so they must also pass its event schema.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AgentJournal } from '../../src/agent/agent-journal.ts';
import { journalOutcomes } from '../../src/agent/update.ts';
import { parseJournal } from '../../src/audit/index.ts';
import { pendingOutcomes, recordOutcome } from '../../src/release/index.ts';
import { tempDir } from '../helpers/workspace.ts';

test('journalOutcomes: a report with members String() cannot convert is journaled as a rejection', async (t) => {
  const dataDir = await tempDir(t);
  const hostile: unknown[] = [[{ toString: 0 }], { toString: 0, valueOf: 0 }];
  for (const v of hostile) {
    await recordOutcome(dataDir, { ok: v, release: { name: v, version: v }, error: { code: v, message: v } } as never);
  }
  await recordOutcome(dataDir, { ok: true, release: { kind: 'model', name: 'm', version: 3 } } as never);
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const path = join(dataDir, 'audit.journal');
  const journal = await AgentJournal.open({
    path,
    privateKey,
    publicKey,
    deviceId: 'dev-0123456789abcdef',
    intervalMs: 3_600_000,
    backoffMaxMs: 3_600_000,
    batch: 100,
    maxPending: 1000,
  });
  t.after(() => journal.close());
  await journalOutcomes(dataDir, journal, 'dev-0123456789abcdef');
  await journal.flush();
  const events = parseJournal(await readFile(path)).entries.map((e) => [
    e.event.type,
    e.event.outcome,
    e.event.details,
  ]);
  const rejected = { releaseId: 'unknown@unknown', deviceId: 'dev-0123456789abcdef', reason: 'EG_INTERNAL: ' };
  assert.deepEqual(events, [
    ['release.rejected', 'denied', rejected],
    ['release.rejected', 'denied', rejected],
    ['release.installed', 'success', { releaseId: 'm@3', deviceId: 'dev-0123456789abcdef', version: '3' }],
  ]);
  assert.deepEqual(await pendingOutcomes(dataDir), [], 'every report was removed once journaled');
});
