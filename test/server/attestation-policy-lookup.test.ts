/**
 * The verifier's policy lookup on both stores: a device's own policy wins over its group's, a
 * group's applies to its members, none means NO_POLICY's default selection, and a stored policy
 * whose YAML no longer matches its hash is refused instead of applied.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { createBootPolicy, formatBootPolicyYaml } from '../../src/attest/index.ts';
import { defaultSyntheticBoot, encodeEventLog, parseEventLog, syntheticBootEvents } from '../../src/eventlog/index.ts';
import { AttestationVerifier } from '../../src/server/attestation/verifier.ts';
import type { ControlPlaneContext } from '../../src/server/context.ts';
import type { Store } from '../../src/store/index.ts';
import { TPM_ALG } from '../../src/tpm/index.ts';
import { BACKENDS } from '../helpers/stores.ts';

const LOG = encodeEventLog([TPM_ALG.SHA256], syntheticBootEvents(defaultSyntheticBoot(), [TPM_ALG.SHA256]));
const POLICY = createBootPolicy(parseEventLog(LOG));
const OTHER = { ...POLICY, pcrs: 'sha256:0,1,2,3,4,5,6,7,8,9,14' };

for (const backend of BACKENDS) {
  describe(`attestation policy lookup on ${backend.name}`, () => {
    let store: Store;
    let cleanup: () => Promise<void>;
    const verifier = () =>
      new AttestationVerifier(
        { store, events: { emit: async () => {} }, crlChanged: () => {} } as unknown as ControlPlaneContext,
        pino({ level: 'silent' }),
      );

    before(async () => {
      ({ store, cleanup } = await backend.open());
    });
    after(async () => cleanup());

    test("a device's own policy wins over its group's; no assignment gives the default selection", async () => {
      const v = verifier();
      assert.equal((await v.issueNonce('dev-a')).pcrs, 'sha256:0,1,2,3,4,5,6,7,8,9');
      await v.records.setGroup('dev-a', 'line-1');
      await v.records.setGroup('dev-b', 'line-1');
      await v.assignPolicy({ group: 'line-1' }, formatBootPolicyYaml(POLICY), 'group', 'admin');
      assert.equal((await v.issueNonce('dev-a')).pcrs, POLICY.pcrs);
      const own = await v.assignPolicy({ device: 'dev-a' }, formatBootPolicyYaml(OTHER), 'own', 'admin');
      assert.equal((await v.issueNonce('dev-a')).pcrs, OTHER.pcrs);
      assert.equal((await v.issueNonce('dev-b')).pcrs, POLICY.pcrs);
      assert.equal(await v.records.assignedPolicy('dev-a'), own.sha256);
      assert.equal(await v.records.assignedPolicy('dev-c'), undefined);
    });

    test('a stored policy whose YAML does not match its hash is refused', async () => {
      const { sha256 } = await verifier().assignPolicy(
        { device: 'dev-t' },
        formatBootPolicyYaml({ ...POLICY, pcrs: 'sha256:0,1,2,3,4,5,6,7,8,9,10' }),
        'to tamper',
        'admin',
      );
      await store.db
        .withTables<{ attestation_policies: { sha256: string; yaml: string } }>()
        .updateTable('attestation_policies')
        .set({ yaml: formatBootPolicyYaml(OTHER) })
        .where('sha256', '=', sha256)
        .execute();
      await assert.rejects(verifier().issueNonce('dev-t'), { code: 'EG_ATTEST_POLICY' });
    });
  });
}
