/**
 * Remote attestation end to end, as deployed: a swtpm device plays a measured boot, enrolls with
 * its TPM (EK certificate, AK) with a real control plane, and runs the real `edgeguard agent serve`
 * (compiled CLI, a child process; `npm run build` first) with `attestation:` and `lease:` in
 * agent.yaml. The reporter inside the agent pushes evidence on its schedule and the control plane
 * records passing verdicts; then a PCR is extended after boot (what a changed boot chain or an
 * attacker's extend looks like to a verifier), the next scheduled report is refused with
 * PCRS_DO_NOT_MATCH_LOG, the lease ends and the agent stops answering inference. The time from the
 * extend to the refusal is measured and printed; the bound is one report interval (+25 % jitter)
 * plus one report.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import YAML from 'yaml';
import { createBootPolicy, formatBootPolicyYaml } from '../../src/attest/index.ts';
import { defaultSyntheticBoot, parseEventLog, playBoot, syntheticBootEvents } from '../../src/eventlog/index.ts';
import { enrollDevice, type FleetClient, type VerdictResponse } from '../../src/fleet/index.ts';
import { initDevice } from '../../src/keystore/index.ts';
import { controlPlanePlugins, type AttestationServerPlugin } from '../../src/server/index.ts';
import { TPM_ALG, TpmClient } from '../../src/tpm/index.ts';
import { TPM_SKIP, startTestTpm, stopTestTpm, type Swtpm } from '../helpers/swtpm.ts';
import { eventually } from '../helpers/wait.ts';
import { FIXTURES } from '../helpers/workspace.ts';
import { startTestFleet, type TestFleet } from '../server/fleet-helpers.ts';
import { infer, serveFixture, startServeProcess } from './serve-fixture.ts';

const BANKS = [TPM_ALG.SHA256];
/** The agent's report interval (the schema's minimum); each wait is 75-125 % of it. */
const REPORT_INTERVAL_MS = 1000;

interface Health {
  attestation?: { lastVerdict?: VerdictResponse; consecutiveFailures: number; lastError?: string };
  lease?: { holds: boolean; lost?: { reason: string; detail: string } };
}

describe('edgeguard agent serve with attestation on swtpm (end to end)', { skip: TPM_SKIP }, () => {
  let work: string;
  let tpm: Swtpm;
  let fleet: TestFleet;
  let plugin: AttestationServerPlugin;
  let admin: FleetClient;
  let deviceDir: string;
  let deviceId: string;
  let logPath: string;

  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'eg-attest-e2e-'));
    tpm = await startTestTpm();
    // The boot comes first: the device's binding key (and so its TLS key) is sealed to these PCRs.
    const golden = await playBoot(
      new TpmClient({ tcti: tpm.tcti }),
      BANKS,
      syntheticBootEvents(defaultSyntheticBoot(), BANKS),
    );
    logPath = join(work, 'binary_bios_measurements');
    writeFileSync(logPath, golden);

    const dataDir = join(work, 'control-plane');
    mkdirSync(join(dataDir, 'ek-roots'), { recursive: true });
    copyFileSync(tpm.ca.rootCertPath, join(dataDir, 'ek-roots', 'swtpm-root.pem'));
    copyFileSync(tpm.ca.issuerCertPath, join(dataDir, 'ek-roots', 'swtpm-issuer.pem'));
    const controlPlane = controlPlanePlugins({ dataDir, attestation: { freshnessSeconds: 60 } });
    plugin = controlPlane.attestation;
    fleet = await startTestFleet({ dataDir, plugins: controlPlane.all });
    admin = fleet.client(await fleet.adminCredential());

    deviceDir = join(work, 'device');
    await initDevice({ dir: deviceDir, tcti: tpm.tcti });
    const enrolling = enrollDevice({
      deviceDir,
      server: fleet.server.url,
      caPem: fleet.ca.rootPem,
      label: 'attest-e2e',
      poll: { initialMs: 50, maxMs: 200, timeoutMs: 60_000 },
    });
    deviceId = await eventually('the device to ask for approval', async () => {
      const r = await admin.call<{ devices: Array<{ id: string }> }>('GET', '/v1/devices?status=pending');
      return r.body.devices[0]?.id;
    });
    await admin.call('POST', `/v1/devices/${deviceId}/approve`);
    await enrolling;
    const policy = formatBootPolicyYaml(createBootPolicy(parseEventLog(golden)));
    await admin.call('POST', '/v1/attestation/policies', { policy, label: 'golden.yaml', device: deviceId });
  });
  after(async () => {
    await fleet?.stop();
    await stopTestTpm(tpm);
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test('scheduled reports pass; after a PCR extend the next report fails and inference stops', async (t) => {
    const f = await serveFixture(t);
    const configPath = join(f.dir, 'agent.yaml');
    writeFileSync(
      configPath,
      YAML.stringify({
        ...f.base,
        log: { level: 'info' },
        upload: { device: deviceDir },
        lease: { enabled: true, checkInIntervalMs: 60_000 },
        attestation: { enabled: true, eventLog: logPath, intervalMs: REPORT_INTERVAL_MS },
      }),
    );
    const started = await startServeProcess(t, configPath);
    const url = started.value;
    const health = async () => (await (await fetch(`${url}/healthz`)).json()) as Health;
    const digit = readFileSync(join(FIXTURES, 'digits', '6-0.png'));

    // The reporter's own schedule: two passing verdicts, recorded by the control plane.
    const seen = new Set<string>();
    await eventually('two scheduled passing reports', async () => {
      const v = (await health()).attestation?.lastVerdict;
      if (v?.pass) seen.add(v.verdictId);
      return seen.size >= 2;
    });
    const gate = await plugin.attestationGate(deviceId);
    assert.deepEqual([gate.state, gate.codes], ['trusted', []]);
    assert.equal(gate.lastVerdict?.pass, true);
    const served = await infer(url, digit, 'image/png');
    assert.equal(served.status, 200, JSON.stringify(served.body));
    assert.equal(served.body.label, '6');
    assert.equal((await health()).lease?.holds, true);

    // A PCR extended after boot: the quote no longer matches the log the device pushes.
    await new TpmClient({ tcti: tpm.tcti }).extendPcr(4, 'sha256', randomBytes(32));
    const extendedAt = performance.now();
    const refused = await eventually(
      'inference to be refused',
      async () => {
        const r = await infer(url, digit, 'image/png');
        return r.status === 503 ? r : undefined;
      },
      { intervalMs: 20 },
    );
    const elapsed = performance.now() - extendedAt;
    t.diagnostic(
      `PCR extend to inference refused: ${elapsed.toFixed(0)} ms (reports every ${REPORT_INTERVAL_MS} ms +-25 %; bound: ${REPORT_INTERVAL_MS * 1.25} ms + one report)`,
    );
    assert.equal(refused.body.error?.code, 'EG_LOCKED');
    const after = await health();
    assert.equal(after.lease?.holds, false);
    assert.deepEqual(
      [after.lease?.lost?.reason, after.lease?.lost?.detail],
      ['attestation-failed', 'PCRS_DO_NOT_MATCH_LOG'],
    );
    assert.deepEqual(after.attestation?.lastVerdict?.codes, ['PCRS_DO_NOT_MATCH_LOG']);
    const status = await plugin.attestationGate(deviceId);
    assert.deepEqual([status.state, status.codes], ['untrusted', ['PCRS_DO_NOT_MATCH_LOG']]);
    assert.match(started.output().stderr, /attestation FAILED/);
  });
});
