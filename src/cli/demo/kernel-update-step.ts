/**
 * Demo step of kernel updates that do not brick a device: its binding key is made with the
 * operator's PCR policy key (PolicyOR of the provisioned PolicyPCR and TPM2_PolicyAuthorize), after
 * a played measured boot. A kernel update changes PCR 4: `device status` shows the difference and
 * refuses; the operator signs the new PCR values (`attest authorize-pcrs`) and the boot policy of
 * the release, and the same wrapped model key unwraps again through the TPM, in memory, with no
 * re-provisioning. Then a boot change nobody signed (Secure Boot off: PCR 7): the model key is
 * refused with EG_TPM_POLICY, yet the device's TLS key (identity key, no PCR policy) still opens, so
 * it pushes its evidence: the verdict fails and the alert is in the audit log.
 * Without swtpm the step is skipped: the software key store has no PCRs to authorize.
 */
import { generateKeyPairSync, timingSafeEqual, type KeyObject } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  encodePrivateKeyPem,
  encodePublicKeyPem,
  generateContentKey,
  readContentKeyFile,
  wipe,
  writePrivateFile,
  type ContentKey,
} from '../../crypto/index.ts';
import { ERROR_EXIT_CODES, EdgeguardError } from '../../errors/index.ts';
import { defaultSyntheticBoot, type SyntheticBoot } from '../../eventlog/index.ts';
import {
  PCR_AUTHORIZATIONS_DIR,
  deviceKeyStatus,
  encodeWrappedKeyFile,
  openDeviceKeyStore,
  parseBindingPublicKey,
  policyNotSatisfied,
  readDeviceFile,
  wrapContentKey,
  type DeviceFile,
  type TpmKeyStatus,
} from '../../keystore/index.ts';
import { missingSwtpmBinaries, parsePcrSelection, policySignerPublic, signPcrAuthorization } from '../../tpm/index.ts';
import type { DemoContext, DemoStep } from './context.ts';
import { refusedCode } from './device-step.ts';
import { startDemoFleet, type DemoFleet } from './fleet-device.ts';
import { DemoTpm, assignBootPolicy, describeVerdict, lastAuditResult, pushEvidence } from './measured-boot.ts';

const RELEASE = '6.1.0-28';

function releaseBoot(): SyntheticBoot {
  return {
    ...defaultSyntheticBoot(),
    kernel: Buffer.from(`vmlinuz-${RELEASE}`),
    initrd: Buffer.from(`initrd.img-${RELEASE}`),
    cmdline: `/boot/vmlinuz-${RELEASE} root=/dev/mmcblk0p2 ro quiet`,
  };
}

/** `attest policy-key create -o PREFIX`: PREFIX.key (0600) and PREFIX.pub. */
async function createPolicyKey(ctx: DemoContext, prefix: string): Promise<{ privateKey: KeyObject; pem: string }> {
  const pair = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pem = encodePublicKeyPem(pair.publicKey);
  await writePrivateFile(`${prefix}.key`, encodePrivateKeyPem(pair.privateKey));
  await writeFile(`${prefix}.pub`, pem);
  ctx.command(`attest policy-key create -o ${prefix}`);
  ctx.say(
    `PCR policy signing key, TPM name ${policySignerPublic(pair.publicKey).name.toString('hex').slice(0, 16)}… (${prefix}.key stays offline)`,
  );
  return { privateKey: pair.privateKey, pem };
}

/** `device status --dir DEV`: the PCRs that differ and whether the binding key answers now. */
async function showStatus(ctx: DemoContext, dir: string, tcti: string): Promise<TpmKeyStatus> {
  const t = (await deviceKeyStatus(dir, { tcti })).tpm!;
  ctx.command(`device status --dir ${dir} --tpm ${tcti}`);
  for (const d of t.differences)
    ctx.say(`${d.bank}:${d.index} differs: provisioned ${d.provisioned.slice(0, 12)}…, now ${d.current.slice(0, 12)}…`);
  if (t.branch === 'authorized') ctx.say(`policy satisfied by the authorization ${t.authorization}`);
  else if (t.branch === 'provisioned') ctx.say('policy satisfied by the provisioned PCR values');
  else
    ctx.say(`exit ${ERROR_EXIT_CODES.EG_TPM_POLICY}: ${policyNotSatisfied(t).code}: ${policyNotSatisfied(t).message}`);
  return t;
}

/** What the three acts share: the device, its TPM, the operator's key, the wrapped model key. */
interface Scene {
  ctx: DemoContext;
  work: string;
  logPath: string;
  tpm: DemoTpm;
  fleet: DemoFleet;
  /** device.json's tpm section at provisioning. */
  device: NonNullable<DeviceFile['tpm']>;
  operator: { privateKey: KeyObject };
  contentKey: ContentKey;
  wrapped: string;
}

/** A real unwrap through the TPM, in memory, compared with the key that was wrapped; then wiped. */
async function unwrapSameKey(s: Scene): Promise<true> {
  const key = await (await openDeviceKeyStore(s.fleet.deviceDir, { tcti: s.tpm.tcti })).unwrapContentKey(s.wrapped);
  try {
    if (key.bytes.length !== s.contentKey.bytes.length || !timingSafeEqual(key.bytes, s.contentKey.bytes))
      throw new EdgeguardError('EG_INTERNAL', 'the TPM unwrapped another key than the model key that was wrapped.');
    return true;
  } finally {
    wipe(key.bytes);
  }
}

async function refusedUnwrap(s: Scene): Promise<string> {
  return refusedCode((await openDeviceKeyStore(s.fleet.deviceDir, { tcti: s.tpm.tcti })).unwrapContentKey(s.wrapped));
}

async function modelKey(ctx: DemoContext): Promise<ContentKey> {
  if (ctx.state.contentKeyPath) return readContentKeyFile(ctx.state.contentKeyPath);
  ctx.say('(the keys step did not run: a fresh content key, in memory, stands for the model key)');
  return generateContentKey();
}

/**
 * A played boot, the operator's PCR policy key, the device made with it and enrolled, the model key
 * wrapped to it. The fleet goes into `started` as soon as it runs, for the caller to close.
 */
async function provision(
  ctx: DemoContext,
  tpm: DemoTpm,
  contentKey: ContentKey,
  started: { fleet?: DemoFleet },
): Promise<Scene> {
  const work = ctx.path('kernel-update');
  await mkdir(work, { recursive: true });
  const logPath = join(work, 'binary_bios_measurements');
  const golden = await tpm.boot(defaultSyntheticBoot(), logPath);
  const operator = await createPolicyKey(ctx, join(work, 'pcr-policy'));
  const fleet = await startDemoFleet(ctx, 'kernel-update', {}, tpm.running, { pcrPolicyKey: operator.pem });
  started.fleet = fleet;
  const dev = fleet.deviceDir;
  const device = (await readDeviceFile(dev)).tpm!;
  ctx.command(`device init --dir ${dev} --tpm ${tpm.tcti} --pcr-policy-key ${join(work, 'pcr-policy.pub')}`);
  ctx.say(`binding key policy: PolicyOR(PolicyPCR ${device.pcrs}, PolicyAuthorize(PCR policy key))`);
  ctx.say(`device ${fleet.deviceId} enrolled with its TPM and approved; booted kernel 6.1.0-edge`);
  await assignBootPolicy(ctx, fleet, { bytes: golden, path: logPath }, join(work, 'golden.yaml'));

  const wrappedPath = join(work, 'model.key.wrapped');
  const binding = parseBindingPublicKey(await readFile(join(dev, 'binding.pub'), 'utf8'));
  const wrapped = encodeWrappedKeyFile(wrapContentKey(contentKey, binding));
  await writeFile(wrappedPath, wrapped);
  ctx.command(`key wrap model.key --to ${join(dev, 'binding.pub')} -o ${wrappedPath}`);
  const scene: Scene = { ctx, work, logPath, tpm, fleet, device, operator, contentKey, wrapped };
  await unwrapSameKey(scene);
  ctx.say('the model key unwraps through the TPM (provisioned PCR values), in memory');
  return scene;
}

/** A kernel update (PCR 4): refused until the operator signs the new values, then the same key unwraps. */
async function authorizedUpdate(s: Scene) {
  const { ctx, tpm, fleet, device } = s;
  const dev = fleet.deviceDir;
  await tpm.reboot();
  const releaseLog = await tpm.boot(releaseBoot(), s.logPath);
  ctx.say(`the device installs kernel ${RELEASE} and reboots`);
  const updated = await showStatus(ctx, dev, tpm.tcti);
  const refused = await refusedUnwrap(s);
  ctx.say(`model key unwrap before the operator signs: refused with ${refused}`);

  const authPath = join(dev, PCR_AUTHORIZATIONS_DIR, `kernel-${RELEASE}.json`);
  const selection = parsePcrSelection(device.pcrs);
  const values = await tpm.client.readPcrs(selection);
  const auth = signPcrAuthorization({
    privateKey: s.operator.privateKey,
    selection,
    values,
    label: `kernel ${RELEASE}`,
  });
  await writeFile(authPath, JSON.stringify(auth, null, 2) + '\n', { flag: 'wx' });
  ctx.command(
    `attest authorize-pcrs --key ${join(s.work, 'pcr-policy.key')} --pcrs ${device.pcrs} --from-device ${dev} --label "kernel ${RELEASE}" -o ${authPath}`,
  );
  ctx.say(`signed PolicyPCR ${auth.approvedPolicy.slice(0, 16)}… (a release ships it with the update)`);
  ctx.say("the release's boot policy lists the new kernel, initrd and command line:");
  await assignBootPolicy(ctx, fleet, { bytes: releaseLog, path: s.logPath }, join(s.work, `kernel-${RELEASE}.yaml`));
  const authorized = await showStatus(ctx, dev, tpm.tcti);
  const sameKey = await unwrapSameKey(s);
  const sameBindingKey = (await readDeviceFile(dev)).tpm!.bindingName === device.bindingName;
  ctx.say(
    `the same wrapped model key unwraps again through the same binding key${sameBindingKey ? '' : ' (NOT the same!)'}: no re-provisioning`,
  );
  const verdict = await pushEvidence(fleet, tpm, s.logPath);
  ctx.say(`attestation verdict: ${describeVerdict(verdict)}`);
  return {
    differences: differing(updated),
    refusedBeforeAuthorization: refused,
    authorization: authorized.authorization,
    sameKey,
    sameBindingKey,
    verdict: verdict.pass,
  };
}

/** Secure Boot switched off (PCR 7), nothing signed for it: refused, yet the device still reports. */
async function unauthorizedChange(s: Scene) {
  const { ctx, tpm, fleet } = s;
  await tpm.reboot();
  await tpm.boot({ ...releaseBoot(), secureBoot: false }, s.logPath);
  ctx.say('the device reboots with Secure Boot off (PCR 7); nobody signed that');
  const tampered = await showStatus(ctx, fleet.deviceDir, tpm.tcti);
  const refused = await refusedUnwrap(s);
  ctx.say(`model key unwrap: refused with ${refused}; nothing was decrypted`);
  ctx.say('its TLS key is wrapped to the identity key (no PCR policy), so it still reports:');
  const verdict = await pushEvidence(fleet, tpm, s.logPath);
  ctx.say(`attestation verdict: ${describeVerdict(verdict)}`);
  const gate = await fleet.controlPlane.attestation.attestationGate(fleet.deviceId);
  ctx.command(`device attest-status ${fleet.deviceId}`);
  ctx.say(`gate: ${gate.state} (${gate.codes.join(', ')}): no release is handed to this device`);
  const alert = await lastAuditResult(fleet);
  ctx.command(`audit list --type attestation.result --device-id ${fleet.deviceId}`);
  const codes = alert && 'codes' in alert.details ? alert.details.codes : undefined;
  ctx.say(JSON.stringify({ type: alert?.type, subject: alert?.subject, outcome: alert?.outcome, codes }));
  return {
    differences: differing(tampered),
    refused,
    verdict: verdict.pass,
    codes: verdict.codes,
    gate: gate.state,
    audited: alert?.outcome === 'failure',
  };
}

function differing(t: TpmKeyStatus): string[] {
  return t.differences.map((d) => `${d.bank}:${d.index}`);
}

export const kernelUpdateStep: DemoStep = {
  id: 'kernel-update',
  title:
    'Kernel updates without re-provisioning: an operator-signed PCR authorization keeps the model key; an unsigned boot change is refused and still reported',
  async run(ctx) {
    const missing = missingSwtpmBinaries();
    if (missing.length) {
      ctx.say(
        `swtpm is not installed (missing ${missing.join(', ')}): kernel update SKIPPED. A software key store is not bound to PCRs, so a boot change neither locks it nor needs authorizing; with a TPM this step signs a kernel update's PCRs and refuses an unsigned change.`,
      );
      return { skipped: true, reason: 'swtpm not installed' };
    }
    const tpm = await DemoTpm.start();
    const started: { fleet?: DemoFleet } = {};
    const contentKey = await modelKey(ctx);
    try {
      const scene = await provision(ctx, tpm, contentKey, started);
      const kernelUpdate = await authorizedUpdate(scene);
      const unauthorized = await unauthorizedChange(scene);
      return { deviceId: scene.fleet.deviceId, kernelUpdate, unauthorized };
    } finally {
      wipe(contentKey.bytes);
      await started.fleet?.server.close();
      await tpm.remove();
    }
  },
};
