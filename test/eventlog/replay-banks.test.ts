/** Replaying only the banks a quote covers gives exactly those banks' values, and no others. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseEventLog, replayEventLog } from '../../src/eventlog/index.ts';
import { TPM_ALG } from '../../src/tpm/index.ts';

const FIXTURES = join(import.meta.dirname, 'fixtures');

test('replayEventLog with a bank list replays those banks only, with the same values', () => {
  const log = parseEventLog(readFileSync(join(FIXTURES, 'coreos_36_shielded_vm_no_secure_boot_eventlog')));
  const all = replayEventLog(log);
  assert.deepEqual(Object.keys(all).sort(), ['sha1', 'sha256', 'sha384']);
  assert.deepEqual(replayEventLog(log, [TPM_ALG.SHA256]), { sha256: all.sha256 });
  assert.deepEqual(replayEventLog(log, [TPM_ALG.SHA1, TPM_ALG.SHA384]), { sha1: all.sha1, sha384: all.sha384 });
  assert.deepEqual(replayEventLog(log, [TPM_ALG.SHA512]), {});
});
