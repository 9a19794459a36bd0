/**
 * Demo step of signed releases: the operator publishes mnist 3 and then mnist 4 (TUF repository in
 * the control plane's data directory, each with a smoke test) and assigns mnist@4 to a swtpm
 * device through the director. Before any attestation verdict the device asks and is refused
 * (403 EG_ATTEST_REFUSED, an audit event); after a passing one it fetches its director targets
 * (the content key wrapped to its enrolled binding key), refreshes the repository, verifies the
 * package, installs it into an A/B slot (TPM unwrap in memory, ORT session, smoke test), switches,
 * raises its TPM anti-rollback floor and reports the version. Then two rollbacks are refused with
 * their reasons: a mirror re-serving the old timestamp, and an assignment of the older mnist 3.
 * Without swtpm the step is skipped: the director wraps keys only to TPM-bound devices.
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import {
  b64url,
  publicKeyId,
  readContentKeyFile,
  readPublicSigningKey,
  signingAlgorithmOf,
  wipe,
  type SigningKeyPair,
} from '../../crypto/index.ts';
import { isEdgeguardError } from '../../errors/index.ts';
import { defaultSyntheticBoot } from '../../eventlog/index.ts';
import { deviceClient, loadDeviceCredential, reportInstalledVersion, type FleetClient } from '../../fleet/index.ts';
import { TpmKeyStore, openDeviceKeyStore } from '../../keystore/index.ts';
import {
  TpmFloor,
  addRelease,
  fetchAssignedRelease,
  fetchRelease,
  initRepository,
  installRelease,
  provisionTrustedRoot,
  publishRepository,
  readPointer,
  releasePaths,
  type AssignedRelease,
  type FetchAssignedOptions,
  type InstallContext,
  verifiedReleaseOf,
} from '../../release/index.ts';
import { missingSwtpmBinaries } from '../../tpm/index.ts';
import type { DemoContext, DemoStep } from './context.ts';
import { startDemoFleet, type DemoFleet } from './fleet-device.ts';
import { DemoTpm, assignBootPolicy, describeVerdict, lastAuditResult, pushEvidence } from './measured-boot.ts';
import { keysStep, packDemoModel } from './model-step.ts';
import { startReplayingMirror } from './replaying-mirror.ts';

/** A sample digit the demo MLP classifies correctly: the smoke test of each release. */
const SMOKE = { file: '3-0.png', label: '3' };

/** `release init`, then mnist 3 and mnist 4 (--min-version 4) each added with a smoke test and published. */
async function publishReleases(ctx: DemoContext, dataDir: string) {
  const dir = join(dataDir, 'releases');
  await initRepository({ dir });
  ctx.command(`release init --dir ${dir}    # root and targets keys offline, snapshot and timestamp online`);
  const smoke = join(ctx.fixtures, 'digits', SMOKE.file);
  const publisher = await readPublicSigningKey(ctx.state.publisherPubPath!);
  let oldTimestamp = Buffer.alloc(0);
  for (const version of [3, 4]) {
    const packagePath = ctx.path('release', `v${version}`, 'mnist.egm');
    await mkdir(ctx.path('release', `v${version}`), { recursive: true });
    await packDemoModel(ctx, 'mnist-mlp.onnx', 'mnist', version, 'aes-256-gcm', undefined, packagePath);
    const minVersion = version === 4 ? 4 : 0;
    await addRelease({
      dir,
      packagePath,
      version,
      minVersion,
      smokeTest: { inputPath: smoke, expectedLabel: SMOKE.label },
      publisherKeys: [publisher],
    });
    const published = await publishRepository(dir);
    ctx.command(
      `release add ${packagePath} --dir ${dir} --version ${version}${minVersion ? ` --min-version ${minVersion}` : ''} --smoke-input fixtures/digits/${SMOKE.file} --smoke-label ${SMOKE.label} --pub publisher.pub`,
    );
    ctx.command(`release publish --dir ${dir}`);
    ctx.say(
      `mnist ${version} published: targets v${published.targetsVersion}, snapshot v${published.snapshotVersion}, timestamp v${published.timestampVersion}`,
    );
    if (version === 3) oldTimestamp = await readFile(join(releasePaths(dir).metadata, 'timestamp.json'));
  }
  return { dir, oldTimestamp };
}

/** The device certificate's key signs its version reports (the server checks them against that certificate). */
function signingKeyOf(keyPem: string): SigningKeyPair {
  const privateKey = createPrivateKey(keyPem);
  const publicKey = createPublicKey(privateKey);
  return { algorithm: signingAlgorithmOf(privateKey), privateKey, publicKey, keyId: publicKeyId(publicKey) };
}

/** What the device holds: its mTLS credential, its trusted root, the pinned director key, its installer. */
async function provisionDevice(ctx: DemoContext, fleet: DemoFleet, tpm: DemoTpm, repository: string) {
  const cred = await loadDeviceCredential(fleet.deviceDir, { tcti: tpm.tcti });
  const client = deviceClient(cred);
  const keys = await client.call<{ keys: Array<{ pem: string }> }>('GET', '/v1/director/keys');
  const metadataDir = join(fleet.deviceDir, 'tuf');
  await provisionTrustedRoot(metadataDir, await readFile(join(releasePaths(repository).metadata, '1.root.json')));
  ctx.say("the device is provisioned with the repository's root.json and pins the director key");
  const fetchOptions: FetchAssignedOptions = {
    server: fleet.server.url,
    ca: cred.caPem,
    cert: cred.certPem,
    key: cred.keyPem,
    deviceId: fleet.deviceId,
    metadataDir,
    downloadDir: ctx.path('release', 'download'),
    publisherKeys: [await readPublicSigningKey(ctx.state.publisherPubPath!)],
    directorKeys: keys.body.keys.map((k) => createPublicKey(k.pem)),
    minimumVersion: 0,
  };
  const wrappedKeyPath = ctx.path('release', 'model.key.wrapped');
  const store = await openDeviceKeyStore(fleet.deviceDir, { tcti: tpm.tcti });
  if (!(store instanceof TpmKeyStore)) throw new Error('the release demo device is a TPM device');
  const install: InstallContext = {
    dataDir: ctx.path('release', 'agent-data'),
    publicKeys: fetchOptions.publisherKeys,
    contentKey: { wrapped: wrappedKeyPath, device: fleet.deviceDir, store },
    floor: new TpmFloor(store),
  };
  return { client, signer: signingKeyOf(cred.keyPem), fetchOptions, install, wrappedKeyPath };
}

type Device = Awaited<ReturnType<typeof provisionDevice>>;

/** The refusal reason of a release fetch that must fail (EG_RELEASE_REFUSED's details.reason). */
async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    if (isEdgeguardError(e, 'EG_RELEASE_REFUSED')) return String(e.details?.reason);
    throw e;
  }
  throw new Error('the release fetch was not refused');
}

/** Before a verdict: the director refuses, and says so in the audit log. */
async function refusedUnattested(ctx: DemoContext, fleet: DemoFleet, device: Device) {
  const r = await device.client.send<{ error: { code: string } }>('GET', '/v1/director/targets.json');
  ctx.command(`agent update --config agent.yaml    # before any attestation verdict`);
  ctx.say(`GET /v1/director/targets.json -> HTTP ${r.status} ${r.body.error.code}`);
  const reason = await refusal(fetchAssignedRelease(device.fetchOptions));
  ctx.say(`the device gets nothing: EG_RELEASE_REFUSED (${reason})`);
  const event = await lastAuditResult(fleet, 'release.rejected');
  ctx.command(`audit list --type release.rejected --device-id ${fleet.deviceId}`);
  const detail = event && 'reason' in event.details ? event.details.reason : undefined;
  ctx.say(JSON.stringify({ type: event?.type, subject: event?.subject, outcome: event?.outcome, reason: detail }));
  return { status: r.status, code: r.body.error.code, reason, audited: event?.outcome === 'denied' };
}

/** The A/B install of what the director assigned: trial load through the TPM, switch, floor, report. */
async function installAssigned(ctx: DemoContext, fleet: DemoFleet, device: Device, got: AssignedRelease) {
  const t = got.target;
  ctx.say(
    `director targets v${got.directorVersion}: ${t.tufPath}, content key wrapped to this device's binding key; TUF hashes, OMS signature and header verified`,
  );
  await writeFile(device.wrappedKeyPath, got.wrappedKey, { mode: 0o600 });
  try {
    const outcome = await installRelease(
      await verifiedReleaseOf(
        { release: t.custom, packagePath: t.path, signaturePath: t.signaturePath, smokeInputPath: t.smokeInputPath },
        got.wrappedKey,
      ),
      device.install,
    );
    if (!outcome.ok) throw new Error(`the install failed: ${outcome.error?.code}: ${outcome.error?.message}`);
    ctx.say(
      `installed into slot ${outcome.slot}: key unwrapped in the TPM, session created, smoke test ${SMOKE.file} -> "${outcome.smokeLabel}"; switched; model floor (TPM NV counter minus its provisioned baseline) ${outcome.floor.value}`,
    );
    await reportInstalledVersion(device.client, device.signer, {
      deviceId: fleet.deviceId,
      release: t.name,
      version: t.version,
      status: 'installed',
    });
    ctx.say(`signed version report sent: ${t.name} ${t.version} installed`);
    return outcome;
  } finally {
    for (const p of [t.path, t.signaturePath, t.smokeInputPath]) if (p) await rm(p, { force: true });
  }
}

async function showStatus(ctx: DemoContext, fleet: DemoFleet) {
  const status = await fleet.controlPlane.director.director!.status('mnist');
  ctx.command('release status --release mnist');
  const mine = status.devices.find((d) => d.deviceId === fleet.deviceId);
  ctx.say(
    `${fleet.deviceId}  mnist  assigned ${mine?.assigned?.version ?? '-'}  installed ${mine?.installed ?? '-'}  failures ${mine?.failures ?? 0}`,
  );
  return mine;
}

/** A mirror replays the old timestamp, then the director names the older release: both refused. */
async function rollbacks(ctx: DemoContext, fleet: DemoFleet, device: Device, repo: { dir: string; old: Buffer }) {
  const mirror = await startReplayingMirror(releasePaths(repo.dir).repository, repo.old);
  ctx.say(`a mirror at ${mirror.url} serves the repository with the timestamp of the day mnist 3 was current:`);
  let oldTimestamp: string;
  try {
    oldTimestamp = await refusal(
      fetchRelease({
        ...device.fetchOptions,
        metadataBaseUrl: `${mirror.url}/metadata`,
        targetBaseUrl: `${mirror.url}/targets`,
        target: 'mnist/3/mnist.egm',
      }),
    );
  } finally {
    await new Promise((ok) => mirror.server.close(ok));
  }
  const trusted = await readCurrentMetadataVersion(device.fetchOptions.metadataDir);
  ctx.say(`refused: EG_RELEASE_REFUSED (${oldTimestamp}); the device still trusts timestamp v${trusted}`);

  await assignRelease(ctx, fleet, 3);
  const floor = await device.install.floor.read('model');
  const olderVersion = await refusal(fetchAssignedRelease({ ...device.fetchOptions, minimumVersion: floor }));
  ctx.say(`the device refuses mnist 3 before any download: EG_RELEASE_REFUSED (${olderVersion}), floor ${floor}`);
  const pointer = await readPointer(device.install.dataDir);
  ctx.say(`slot ${pointer?.active.slot} still serves mnist 4`);
  return { oldTimestamp, trustedTimestamp: trusted, olderVersion, floor, activeSlot: pointer?.active.slot };
}

/** The timestamp version in the device's trusted metadata. */
async function readCurrentMetadataVersion(metadataDir: string): Promise<number> {
  const json = JSON.parse(await readFile(join(metadataDir, 'timestamp.json'), 'utf8')) as {
    signed: { version: number };
  };
  return json.signed.version;
}

async function assignRelease(ctx: DemoContext, fleet: DemoFleet, version: number) {
  const key = await readContentKeyFile(ctx.state.contentKeyPath!);
  try {
    const a = await fleet.controlPlane.director.director!.assign(
      { release: 'mnist', version, device: fleet.deviceId, contentKey: b64url(key.bytes) },
      'demo-operator',
    );
    ctx.command(`release assign mnist@${version} --device ${fleet.deviceId} --content-key model.key`);
    return a;
  } finally {
    wipe(key.bytes);
  }
}

async function story(ctx: DemoContext, tpm: DemoTpm, started: { fleet?: DemoFleet; client?: FleetClient }) {
  const work = ctx.path('release');
  await mkdir(work, { recursive: true });
  const logPath = join(work, 'binary_bios_measurements');
  const golden = await tpm.boot(defaultSyntheticBoot(), logPath);
  const fleet = await startDemoFleet(ctx, 'release', {}, tpm.running);
  started.fleet = fleet;
  ctx.say(`device ${fleet.deviceId} enrolled with its TPM and approved; booted a measured boot`);
  await assignBootPolicy(ctx, fleet, { bytes: golden, path: logPath }, join(work, 'golden.yaml'));
  const repo = await publishReleases(ctx, ctx.path('release-control-plane'));
  await assignRelease(ctx, fleet, 4);
  const device = await provisionDevice(ctx, fleet, tpm, repo.dir);
  started.client = device.client;

  const unattested = await refusedUnattested(ctx, fleet, device);
  const verdict = await pushEvidence(fleet, tpm, logPath);
  ctx.say(`the device pushes its evidence: ${describeVerdict(verdict)}`);
  const got = await fetchAssignedRelease(device.fetchOptions);
  if (!got) throw new Error('the director assigned the device nothing');
  const outcome = await installAssigned(ctx, fleet, device, got);
  const status = await showStatus(ctx, fleet);
  const refused = await rollbacks(ctx, fleet, device, { dir: repo.dir, old: repo.oldTimestamp });
  return {
    deviceId: fleet.deviceId,
    unattested,
    verdict: verdict.pass,
    installed: { version: got.target.version, slot: outcome.slot, smokeLabel: outcome.smokeLabel },
    floor: outcome.floor,
    status: { assigned: status?.assigned?.version, installed: status?.installed },
    rollback: refused,
  };
}

export const releaseStep: DemoStep = {
  id: 'release',
  title:
    'Signed releases: TUF repository, director assignment gated on attestation, A/B install with a smoke test, rollbacks refused',
  async run(ctx) {
    const missing = missingSwtpmBinaries();
    if (missing.length) {
      ctx.say(
        `swtpm is not installed (missing ${missing.join(', ')}): release SKIPPED. The director wraps a release's content key only to an enrolled TPM binding key and hands it out only after passing attestation; with a TPM this step publishes, assigns, refuses an unattested device, installs on an attested one and refuses rollbacks.`,
      );
      return { skipped: true, reason: 'swtpm not installed' };
    }
    if (!ctx.state.contentKeyPath || !ctx.state.publisherPubPath) {
      ctx.say('(the keys step did not run: making the demo keys first)');
      await keysStep.run(ctx);
    }
    const tpm = await DemoTpm.start();
    const started: { fleet?: DemoFleet; client?: FleetClient } = {};
    try {
      return await story(ctx, tpm, started);
    } finally {
      started.client?.close();
      await started.fleet?.server.close();
      await tpm.remove();
    }
  },
};
