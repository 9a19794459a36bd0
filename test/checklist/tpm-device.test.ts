/**
 * EG-01 and EG-07 on devices whose key store is a real swtpm: the binding key's PolicyPCR
 * selection and digest are the evidence; a policy that leaves out PCR 7 (the Secure Boot state)
 * fails. With the operator's PCR policy key the digest is the PolicyOR one, and the policy key and
 * every authorization on the device are listed; an authorization without PCR 7 fails. EG-07 fails while the agent does not push attestation evidence, warns when it does but
 * no verdict was asked for, and follows a real control plane's verdict on a quote of a played
 * boot: PASS, then FAIL with the reason code once a PCR moved after boot.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeFile } from 'node:fs/promises';
import { pino } from 'pino';
import { AttestationReporter, loadAgentConfig, readDeviceAk } from '../../src/agent/index.ts';
import { createBootPolicy, formatBootPolicyYaml } from '../../src/attest/index.ts';
import { runChecklist, type CheckResult, type ChecklistTarget } from '../../src/checklist/index.ts';
import { defaultSyntheticBoot, parseEventLog, playBoot, syntheticBootEvents } from '../../src/eventlog/index.ts';
import { PCR_AUTHORIZATIONS_DIR, readDeviceFile } from '../../src/keystore/index.ts';
import { controlPlanePlugins } from '../../src/server/index.ts';
import { TPM_ALG, TpmClient, parsePcrSelection, parseTpm2bPublic, signPcrAuthorization } from '../../src/tpm/index.ts';
import { TPM_SKIP, startTestTpm, stopTestTpm, type Swtpm } from '../helpers/swtpm.ts';
import { startTestFleet } from '../server/fleet-helpers.ts';
import { makeDemoDevice, type DemoDevice } from './demo-device.ts';

async function checklistOf(
  device: DemoDevice,
  extra: { attestation?: { enabled: boolean }; attest?: ChecklistTarget['attest'] } = {},
): Promise<Map<string, CheckResult>> {
  const config = await loadAgentConfig(device.configPath);
  const results = await runChecklist({
    deviceDir: device.deviceDir,
    configPath: device.configPath,
    config: extra.attestation ? { ...config, attestation: { ...config.attestation, ...extra.attestation } } : config,
    root: device.root,
    ...(extra.attest ? { attest: extra.attest } : {}),
  });
  return new Map(results.map((r) => [r.id, r]));
}

describe('checklist on a TPM-backed device', { skip: TPM_SKIP }, () => {
  let tpm: Swtpm | undefined;
  let base: string;

  before(async () => {
    tpm = await startTestTpm();
    base = await mkdtemp(join(tmpdir(), 'eg-checklist-tpm-'));
  });
  after(async () => {
    await stopTestTpm(tpm);
    await rm(base, { recursive: true, force: true });
  });

  test('the default policy (PCRs 0-5, 7, 16): EG-01 passes with the policy as evidence', async () => {
    const device = await makeDemoDevice(join(base, 'default'), { tcti: tpm!.tcti });
    const byId = await checklistOf(device);
    const eg01 = byId.get('EG-01')!;
    assert.equal(eg01.status, 'PASS', eg01.actual);
    const tpmFile = (await readDeviceFile(device.deviceDir)).tpm!;
    const evidence = new Map(eg01.evidence.map((e) => [e.name, e.value]));
    assert.equal(evidence.get('PCR selection'), tpmFile.pcrs);
    assert.equal(evidence.get('PolicyPCR digest'), tpmFile.policyDigest);
    const eg07 = byId.get('EG-07')!;
    assert.equal(eg07.status, 'FAIL', eg07.actual);
    assert.match(eg07.actual, /attestation\.enabled is false/);
    assert.deepEqual(eg07.evidence.slice(0, 2), [
      { name: 'attestation key name', value: tpmFile.akName },
      { name: 'agent.yaml attestation.enabled', value: 'false' },
    ]);
    const offline = (await checklistOf(device, { attestation: { enabled: true } })).get('EG-07')!;
    assert.equal(offline.status, 'WARN', offline.actual);
    assert.match(offline.actual, /no verdict was asked for/);
  });

  test("EG-07 follows the control plane's verdict on a quote made now", async () => {
    const device = await makeDemoDevice(join(base, 'attested'), { tcti: tpm!.tcti });
    const dataDir = join(base, 'control-plane');
    const controlPlane = controlPlanePlugins({ dataDir });
    const fleet = await startTestFleet({ dataDir, plugins: controlPlane.all });
    try {
      const cred = await fleet.deviceCredential();
      const ak = await readDeviceAk(device.deviceDir);
      await fleet.server.ctx.store.db
        .updateTable('devices')
        .set({ ak_public: Buffer.from(parseTpm2bPublic(ak.public).tpmtBytes).toString('base64') })
        .where('id', '=', cred.deviceId)
        .execute();
      const client = new TpmClient({ tcti: tpm!.tcti });
      const banks = [TPM_ALG.SHA256];
      const golden = await playBoot(client, banks, syntheticBootEvents(defaultSyntheticBoot(), banks));
      const logPath = join(base, 'binary_bios_measurements');
      await writeFile(logPath, golden);
      const policy = formatBootPolicyYaml(createBootPolicy(parseEventLog(golden)));
      await fleet
        .client(await fleet.adminCredential())
        .call('POST', '/v1/attestation/policies', { policy, label: 'golden', device: cred.deviceId });
      const reporter = new AttestationReporter({
        client: fleet.client(cred),
        tpm: client,
        ak,
        eventLogPath: logPath,
        log: pino({ level: 'silent' }),
      });
      const attest = () => reporter.pushNow();
      const pass = (await checklistOf(device, { attestation: { enabled: true }, attest })).get('EG-07')!;
      assert.equal(pass.status, 'PASS', pass.actual);
      assert.ok(pass.evidence.some((e) => e.name === 'trusted until'));
      await client.extendPcr(9, 'sha256', Buffer.alloc(32, 0x5a));
      const fail = (await checklistOf(device, { attestation: { enabled: true }, attest })).get('EG-07')!;
      assert.equal(fail.status, 'FAIL', fail.actual);
      assert.match(fail.actual, /PCRS_DO_NOT_MATCH_LOG/);
      assert.ok(fail.evidence.some((e) => e.name === 'reason PCRS_DO_NOT_MATCH_LOG'));
    } finally {
      await fleet.stop();
    }
  });

  test('an authorized policy (--pcr-policy-key): EG-01 labels the PolicyOR digest and lists the authorizations', async () => {
    const operator = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const device = await makeDemoDevice(join(base, 'authorized'), {
      tcti: tpm!.tcti,
      pcrPolicyKey: operator.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    });
    const tpmFile = (await readDeviceFile(device.deviceDir)).tpm!;
    const eg01 = async () => (await checklistOf(device)).get('EG-01')!;
    const evidenceOf = (r: CheckResult) => new Map(r.evidence.map((e) => [e.name, e]));

    const none = await eg01();
    assert.equal(none.status, 'PASS', none.actual);
    assert.match(none.actual, /PolicyOR\(PolicyPCR\(sha256:0,1,2,3,4,5,7,16\), PolicyAuthorize\(PCR policy key/);
    const e = evidenceOf(none);
    assert.equal(e.has('PolicyPCR digest'), false, 'the PolicyOR digest is not labelled PolicyPCR');
    assert.equal(e.get('PolicyOR digest (provisioned PolicyPCR or PolicyAuthorize)')?.value, tpmFile.policyDigest);
    assert.equal(e.get('provisioned PolicyPCR digest')?.value, tpmFile.pcrPolicyDigest);
    assert.notEqual(tpmFile.pcrPolicyDigest, tpmFile.policyDigest);
    assert.equal(e.get('PCR policy key (TPM name)')?.value, tpmFile.pcrPolicySigner);
    assert.equal(e.get('PCR policy key (TPM name)')?.path, join(device.deviceDir, 'pcr-policy.pub'));
    assert.equal(e.get('PCR authorizations')?.value, '0 valid, 0 ignored');

    const authDir = join(device.deviceDir, PCR_AUTHORIZATIONS_DIR);
    const sign = (pcrs: string, label: string) => {
      const selection = parsePcrSelection(pcrs);
      const values = { sha256: Object.fromEntries(selection[0]!.pcrs.map((i) => [i, Buffer.alloc(32, i + 1)])) };
      return JSON.stringify(signPcrAuthorization({ privateKey: operator.privateKey, selection, values, label }));
    };
    await writeFile(join(authDir, 'kernel-2.json'), sign('sha256:0,4,7', 'kernel 2'));
    await writeFile(join(authDir, 'broken.json'), '{"type":"edgeguard-pcr-authorization"');
    const two = await eg01();
    assert.equal(two.status, 'PASS', two.actual);
    const authorized = two.evidence.filter((x) => x.name === 'PCR authorization');
    assert.deepEqual(
      authorized.map((x) => [x.path, x.value.replace(/ = [0-9a-f]{64}/, ' = H')]),
      [[join(authDir, 'kernel-2.json'), 'sha256:0,4,7 = H (kernel 2)']],
    );
    assert.deepEqual(
      two.evidence.filter((x) => x.name === 'ignored PCR authorization').map((x) => [x.path, x.value]),
      [[join(authDir, 'broken.json'), 'EG_FORMAT']],
    );
    assert.equal(evidenceOf(two).get('PCR authorizations')?.value, '1 valid, 1 ignored');

    // Signed by the operator's key, but without PCR 7: under it the key ignores the Secure Boot state.
    await writeFile(join(authDir, 'kernel-only.json'), sign('sha256:4', 'kernel only'));
    const loose = await eg01();
    assert.equal(loose.status, 'FAIL', loose.actual);
    assert.match(loose.actual, /kernel-only\.json does not cover PCR 7/);
  });

  test('a policy without PCR 7: EG-01 fails', async () => {
    const device = await makeDemoDevice(join(base, 'no-pcr7'), { tcti: tpm!.tcti, pcrs: 'sha256:0,1,2' });
    const eg01 = (await checklistOf(device)).get('EG-01')!;
    assert.equal(eg01.status, 'FAIL');
    assert.match(eg01.actual, /does not cover PCR 7/);
  });
});
