/**
 * Demo step of physical tamper detection: the agent runs as an enrolled fleet device with a
 * chassis-intrusion sensor read from a sysfs-shaped directory in the workspace. Opening the case
 * (the alarm file flips to 1) locks the device: inference answers 503 EG_LOCKED, the key store is
 * wiped, the lock state is on disk, tamper.detected + device.locked reach the control plane's
 * Merkle log at once, and the control plane marks the device tampered and revokes its certificate.
 * A restart stays locked. With swtpm installed the device is TPM-bound (binding PCRs include 16,
 * the tamper PCR): the response extends PCR 16 and the TPM itself refuses the binding key after;
 * without it the device uses the software key store, said so, and the PCR step is skipped.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import YAML from 'yaml';
import { loadAgentConfig, startAgent } from '../../agent/index.ts';
import { decodeLogLeaf } from '../../audit/index.ts';
import { readContentKeyFile } from '../../crypto/index.ts';
import { isEdgeguardError } from '../../errors/index.ts';
import {
  encodeWrappedKeyFile,
  openDeviceKeyStore,
  parseBindingPublicKey,
  wrapContentKey,
} from '../../keystore/index.ts';
import { DEFAULT_BINDING_PCRS, missingSwtpmBinaries, startSwtpm, type Swtpm } from '../../tpm/index.ts';
import type { DemoContext, DemoStep } from './context.ts';
import { startDemoFleet, type DemoFleet } from './fleet-device.ts';

const ALARM = join('class', 'hwmon', 'hwmon0', 'intrusion0_alarm');

async function writeAgentConfig(
  ctx: DemoContext,
  fleet: DemoFleet,
  sysfs: string,
): Promise<{ path: string; wrapped: string }> {
  const wrapped = ctx.path('tamper-model.key.wrapped');
  const binding = parseBindingPublicKey(await readFile(join(fleet.deviceDir, 'binding.pub'), 'utf8'));
  await writeFile(
    wrapped,
    encodeWrappedKeyFile(wrapContentKey(await readContentKeyFile(ctx.state.contentKeyPath!), binding)),
  );
  const config = {
    listen: { host: '127.0.0.1', port: 0 },
    trust: { publicKeys: [ctx.state.publisherPubPath!] },
    contentKey: { wrapped, device: fleet.deviceDir },
    models: { primary: ctx.state.fallbackPackagePath!, ensemble: ctx.state.packagePath! },
    guard: { profile: join(ctx.fixtures, 'guard', 'mnist-cnn.pipeline.profile.json') },
    review: { enabled: false },
    upload: { device: fleet.deviceDir },
    renewal: { enabled: false },
    journal: { forwardIntervalMs: 3_600_000 },
    tamper: {
      sysfsRoot: sysfs,
      pollIntervalMs: 50,
      sensors: [{ kind: 'intrusion', name: 'chassis', hwmon: 'hwmon0' }],
    },
    log: { level: 'silent' },
  };
  const path = ctx.path('agent-tamper.yaml');
  await writeFile(path, YAML.stringify(config));
  return { path, wrapped };
}

/** What the device's own key store says to the wrapped content key now: `unwrapped`, or the refusal's code. */
async function unwrapOutcome(deviceDir: string, wrapped: string): Promise<string> {
  return openDeviceKeyStore(deviceDir)
    .then(async (store) => (await store.unwrapContentKey(await readFile(wrapped, 'utf8'))).bytes.fill(0))
    .then(
      () => 'unwrapped',
      (e: unknown) => (isEdgeguardError(e) ? e.code : 'error'),
    );
}

/** The device's and the control plane's events about this device in the Merkle log. */
async function loggedTypes(fleet: DemoFleet): Promise<string[]> {
  const log = fleet.controlPlane.audit.log!;
  await log.flush();
  const cp = await log.publishCheckpoint();
  const types: string[] = [];
  for (let i = 0; i < cp.size; i++) {
    const leaf = decodeLogLeaf(Buffer.from((await log.inclusionProof(i, cp.size)).leaf));
    if (leaf.event.subject === fleet.deviceId) types.push(`${leaf.origin.kind}:${leaf.event.type}`);
  }
  return types;
}

async function post(url: string, png: Buffer): Promise<{ status: number; body: Record<string, unknown> }> {
  const r = await fetch(`${url}/v1/infer`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: png });
  return { status: r.status, body: (await r.json()) as Record<string, unknown> };
}

export const tamperLockStep: DemoStep = {
  id: 'tamper-lock',
  title:
    'Physical tamper: a simulated case-open locks the device, the control plane revokes it, the audit log shows it',
  async run(ctx) {
    let tpm: Swtpm | undefined;
    let fleet: DemoFleet | undefined;
    try {
      if (missingSwtpmBinaries().length === 0) {
        tpm = await startSwtpm();
        ctx.say(
          `started swtpm at ${tpm.tcti}: the device's binding key is bound to PCRs ${DEFAULT_BINDING_PCRS} (16 is the tamper PCR)`,
        );
      } else {
        ctx.say('swtpm is not installed: this device uses the SOFTWARE key store, which has no tamper PCR to extend.');
      }
      fleet = await startDemoFleet(ctx, 'tamper', {}, tpm);
      const sysfs = ctx.path('tamper-sysfs');
      await mkdir(join(sysfs, 'class', 'hwmon', 'hwmon0'), { recursive: true });
      await writeFile(join(sysfs, ALARM), '0\n');
      const { path: configPath, wrapped } = await writeAgentConfig(ctx, fleet, sysfs);
      const config = await loadAgentConfig(configPath);
      const agent = await startAgent(config);
      const digit = await readFile(join(ctx.fixtures, 'digits', '9-0.png'));
      let report;
      try {
        ctx.command(`agent serve --config ${configPath}   # tamper: intrusion sensor on ${sysfs}/${ALARM}`);
        ctx.say(`case closed: POST /v1/infer -> ${(await post(agent.url, digit)).status}`);
        await writeFile(join(sysfs, ALARM), '1\n');
        ctx.say(`case opened: ${ALARM} = 1`);
        while (!agent.tamper!.response) await new Promise((r) => setTimeout(r, 10));
        report = await agent.tamper!.response;
        const steps = report.steps.map(
          (s) => `${s.step} ${s.ok ? 'ok' : `FAILED (${s.error?.code})`} ${s.ms.toFixed(1)} ms`,
        );
        ctx.say(`tamper response in ${report.totalMs.toFixed(1)} ms: ${steps.join('; ')}`);
        const locked = await post(agent.url, digit);
        ctx.say(`POST /v1/infer -> ${locked.status} ${(locked.body.error as { code: string }).code}`);
      } finally {
        await agent.close('demo done');
      }
      const keyAfter = await unwrapOutcome(fleet.deviceDir, wrapped);
      ctx.say(
        tpm
          ? `the TPM itself now refuses the binding key (PCR 16 moved): ${keyAfter}`
          : `the software key store still opens the wrapped key (${keyAfter}): only the lock file stops the agent`,
      );
      const device = await fleet.server.ctx.store.getDevice(fleet.deviceId);
      ctx.command(`device show ${fleet.deviceId}   # status: ${device?.status}, certificate revoked`);
      const types = await loggedTypes(fleet);
      ctx.say(`in the control plane's Merkle log: ${types.slice(-3).join(', ')}`);
      const restart = await startAgent(config).then(
        async (a) => (await a.close(), 'started'),
        (e: unknown) => (isEdgeguardError(e) ? e.code : 'error'),
      );
      ctx.say(
        `restart: ${restart} (tamper.lock.json in ${fleet.deviceDir}; edgeguard device reprovision brings it back)`,
      );
      if (device?.status !== 'tampered' || restart !== 'EG_LOCKED') throw new Error('the demo device did not lock');
      if (tpm && keyAfter !== 'EG_TPM_POLICY') throw new Error(`the TPM did not refuse the binding key: ${keyAfter}`);
      return {
        keyProvider: tpm ? 'tpm' : 'software',
        status: device.status,
        restart,
        totalMs: report.totalMs,
        steps: Object.fromEntries(report.steps.map((s) => [s.step, s.ok ? 'ok' : (s.error?.code ?? 'failed')])),
        keyAfter,
        logTypes: types,
      };
    } finally {
      await fleet?.server.close();
      await tpm?.remove();
    }
  },
};
