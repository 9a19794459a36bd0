/**
 * A boot played into a real swtpm: the PCRs are extended as firmware would, the written log is in
 * the real format, and a real TPM2_Quote over those PCRs verifies against the PCRs replayed from
 * the log. Anything extended afterwards breaks the match.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isEdgeguardError } from '../../src/errors/index.ts';
import {
  TPM_ALG,
  TpmClient,
  parsePcrSelection,
  parseTpm2bPublic,
  verifyQuote,
  type EndorsementKeys,
} from '../../src/tpm/index.ts';
import {
  defaultSyntheticBoot,
  eventsToReplay,
  parseEventLog,
  playBoot,
  replayEventLog,
  replayedPcrsFor,
  startupLocalityEvent,
  syntheticBootEvents,
} from '../../src/eventlog/index.ts';
import { TPM_SKIP, startTestTpmWithAk, stopTestTpm, type TestTpmWithAk } from '../helpers/swtpm.ts';

const QUOTED = parsePcrSelection('sha256:0,1,2,3,4,5,6,7,8,9,14');

async function quoteMatchesLog(client: TpmClient, keys: EndorsementKeys, logBytes: Buffer): Promise<void> {
  const nonce = randomBytes(32);
  const q = await client.attestation.quote(keys.ak, QUOTED, nonce);
  const replayed = replayedPcrsFor(replayEventLog(parseEventLog(logBytes)), QUOTED);
  verifyQuote(parseTpm2bPublic(keys.ak.public), q.attest, q.signature, nonce, replayed);
}

describe('a boot played into swtpm', { skip: TPM_SKIP }, () => {
  let device: TestTpmWithAk | undefined;
  let client: TpmClient;
  let keys: EndorsementKeys;

  before(async () => {
    device = await startTestTpmWithAk();
    ({ client, keys } = device);
  });
  after(() => stopTestTpm(device?.tpm));

  test('a synthetic shim/GRUB boot: the quote matches the written log; an extend afterwards does not', async () => {
    const log = await playBoot(client, [TPM_ALG.SHA256], syntheticBootEvents(defaultSyntheticBoot(), [TPM_ALG.SHA256]));
    await quoteMatchesLog(client, keys, log);
    await client.extendPcr(4, 'sha256', randomBytes(32));
    await assert.rejects(quoteMatchesLog(client, keys, log), (e) => isEdgeguardError(e, 'EG_SIGNATURE_INVALID'));
  });

  test('the recorded CoreOS boot played into a fresh swtpm: the quote matches, the log replays as recorded', async () => {
    const recorded = parseEventLog(
      readFileSync(join(import.meta.dirname, 'fixtures', 'coreos_36_shielded_vm_no_secure_boot_eventlog')),
    );
    const fresh = await startTestTpmWithAk();
    try {
      const { client: freshClient, keys: freshKeys } = fresh;
      const log = await playBoot(freshClient, [TPM_ALG.SHA256], eventsToReplay(recorded, [TPM_ALG.SHA256]));
      await quoteMatchesLog(freshClient, freshKeys, log);
      assert.deepEqual(replayEventLog(parseEventLog(log)).sha256, replayEventLog(recorded).sha256);
    } finally {
      await stopTestTpm(fresh.tpm);
    }
  });

  test('a StartupLocality event cannot be played (swtpm starts at locality 0)', async () => {
    await assert.rejects(playBoot(client, [TPM_ALG.SHA256], [startupLocalityEvent(3, [TPM_ALG.SHA256])]), (e) =>
      isEdgeguardError(e, 'EG_USAGE'),
    );
  });
});
