/**
 * The tamper response locks the key for real, on swtpm: a device provisioned with the default
 * PCR selection (which includes the tamper PCR 16) unwraps its content key; the response wipes
 * the key store (the key buffer the caller holds reads as zeros) and extends PCR 16; from then on
 * the TPM refuses the unwrap under the binding policy (EG_TPM_POLICY), even through a freshly
 * opened key store, and the wiped store refuses with EG_LOCKED.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateContentKey } from '../../src/crypto/index.ts';
import { isEdgeguardError } from '../../src/errors/index.ts';
import {
  encodeWrappedKeyFile,
  initDevice,
  openDeviceKeyStore,
  parseBindingPublicKey,
  readDeviceFile,
  wrapContentKey,
} from '../../src/keystore/index.ts';
import { isLocked, respondToTamper } from '../../src/tamper/index.ts';
import { DEFAULT_BINDING_PCRS, TpmClient } from '../../src/tpm/index.ts';
import { TPM_SKIP, startTestTpm, stopTestTpm, type Swtpm } from '../helpers/swtpm.ts';

describe('tamper response against the binding key (swtpm)', { skip: TPM_SKIP }, () => {
  let tpm: Swtpm | undefined;
  let base: string;

  before(async () => {
    tpm = await startTestTpm();
    base = await mkdtemp(join(tmpdir(), 'eg-tamper-tpm-'));
  });
  after(async () => {
    await stopTestTpm(tpm);
    if (base) await rm(base, { recursive: true, force: true });
  });

  test('unwraps before; after the response the key buffer is zero and the TPM refuses with EG_TPM_POLICY', async () => {
    assert.equal(DEFAULT_BINDING_PCRS, 'sha256:0,1,2,3,4,5,7,16');
    const dir = join(base, 'device');
    await initDevice({ dir, tcti: tpm!.tcti });
    const device = await readDeviceFile(dir);
    assert.equal(device.tpm?.pcrs, DEFAULT_BINDING_PCRS, 'new devices bind to the tamper PCR');
    const contentKey = generateContentKey();
    const wrapped = encodeWrappedKeyFile(
      wrapContentKey(contentKey, parseBindingPublicKey(await readFile(join(dir, 'binding.pub'), 'utf8'))),
    );
    const store = await openDeviceKeyStore(dir);
    const held = await store.unwrapContentKey(wrapped);
    assert.deepEqual(held.bytes, contentKey.bytes);

    const stateDir = await mkdtemp(join(base, 'state-'));
    const report = await respondToTamper(
      { sensor: 'chassis', kind: 'intrusion', cause: 'tampered', detail: 'intrusion0_alarm = 1', at: new Date() },
      {
        actions: {
          stopServing: () => undefined,
          wipeSecrets: () => store.wipe(),
          journal: () => undefined,
          notifyControlPlane: () => undefined,
        },
        tpm: new TpmClient({ tcti: tpm!.tcti }),
        pcr: { index: 16, bank: 'sha256' },
        stateDir: stateDir,
        deviceId: 'dev-1',
        bindingKey: device.bindingKey,
        stepTimeoutMs: 10_000,
      },
    );
    assert.equal(report.ok, true, JSON.stringify(report.steps));
    assert.deepEqual(held.bytes, Buffer.alloc(32), 'the key buffer the agent held is zeroed');
    await assert.rejects(store.unwrapContentKey(wrapped), (e: unknown) => isEdgeguardError(e, 'EG_LOCKED'));
    const reopened = await openDeviceKeyStore(dir);
    await assert.rejects(reopened.unwrapContentKey(wrapped), (e: unknown) => isEdgeguardError(e, 'EG_TPM_POLICY'));
    assert.equal(await isLocked(stateDir), true);
  });
});
