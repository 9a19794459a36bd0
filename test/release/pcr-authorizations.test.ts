/**
 * A release that ships the PCR authorization of the boot it brings (real swtpm, real repository
 * over HTTP): the operator predicts the PCRs of kernel B from the device's kernel-A log
 * (`attest predict-pcrs`), signs them (`attest authorize-pcrs`) and adds them to the release
 * (`release add --pcr-authorization`). The device fetches them through TUF, checks them against its
 * PCR policy key, installs them before rebooting, and after booting kernel B its binding key
 * unwraps the same model key, with no re-provisioning. An authorization signed by another key
 * refuses the release (typed); a tampered one fails the TUF hash.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateContentKey, wipe, type ContentKey } from '../../src/crypto/index.ts';
import { isEdgeguardError } from '../../src/errors/index.ts';
import { defaultSyntheticBoot, playBoot, syntheticBootEvents } from '../../src/eventlog/index.ts';
import {
  PCR_AUTHORIZATIONS_DIR,
  encodeWrappedKeyFile,
  initDevice,
  openDeviceKeyStore,
  wrapContentKey,
} from '../../src/keystore/index.ts';
import {
  addRelease,
  devicePcrPolicyKey,
  fetchRelease,
  initRepository,
  installPcrAuthorizations,
  provisionTrustedRoot,
  publishRepository,
  readCurrentMetadata,
  releasePaths,
  type FetchReleaseOptions,
} from '../../src/release/index.ts';
import { TPM_ALG, TpmClient, startSwtpm, type Swtpm } from '../../src/tpm/index.ts';
import { kernelUpdateBoot } from '../helpers/boots.ts';
import { runCli } from '../helpers/cli.ts';
import { packBytes } from '../helpers/packages.ts';
import { serveDirectory, type StaticServer } from '../helpers/static-server.ts';
import { TPM_SKIP, startTestTpm } from '../helpers/swtpm.ts';
import { writeKeys, type KeyFiles } from '../helpers/workspace.ts';

const SHA256 = [TPM_ALG.SHA256];
const PCRS = 'sha256:0,1,2,3,4,5,7,16';
const hex = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function cli(args: string[]): Promise<void> {
  const r = await runCli(args);
  assert.equal(r.code, 0, `${args.slice(0, 2).join(' ')}: ${r.stderr}`);
}

describe('PCR authorizations shipped with a release (swtpm)', { skip: TPM_SKIP }, () => {
  let tpm: Swtpm;
  let base: string;
  let dev: string;
  let contentKey: ContentKey;
  let wrapped: string;
  let keys: KeyFiles;
  let server: StaticServer;
  let options: Omit<FetchReleaseOptions, 'target'>;
  const targets: Record<number, string> = {};
  const closers: Array<() => Promise<void>> = [];
  const signedTargets = async () =>
    (await readCurrentMetadata(releasePaths(join(base, 'repo')).metadata)).targets.signed;

  before(async () => {
    tpm = await startTestTpm();
    base = await mkdtemp(join(tmpdir(), 'eg-release-pcr-'));
    const logA = await playBoot(
      new TpmClient({ tcti: tpm.tcti }),
      SHA256,
      syntheticBootEvents(defaultSyntheticBoot(), SHA256),
    );
    await writeFile(join(base, 'golden.bin'), logA);
    await cli(['attest', 'policy-key', 'create', '-o', join(base, 'op')]);
    await cli(['attest', 'policy-key', 'create', '-o', join(base, 'other')]);
    dev = join(base, 'device');
    await initDevice({
      dir: dev,
      tcti: tpm.tcti,
      pcrs: PCRS,
      pcrPolicyKey: await readFile(join(base, 'op.pub'), 'utf8'),
    });
    contentKey = generateContentKey();
    wrapped = encodeWrappedKeyFile(wrapContentKey(contentKey, (await openDeviceKeyStore(dev)).bindingPublicKey));

    // The operator: predict kernel B's PCRs from the device's log, sign them (and a stranger signs too).
    const b = kernelUpdateBoot();
    const values = join(base, 'values.json');
    await cli([
      'attest',
      'predict-pcrs',
      '--log',
      join(base, 'golden.bin'),
      '--kernel',
      `sha256:${hex(b.kernel)}`,
      '--initrd',
      `sha256:${hex(b.initrd)}`,
      '--cmdline',
      b.cmdline,
      '--pcrs',
      PCRS,
      '-o',
      values,
    ]);
    for (const signer of ['op', 'other'])
      await cli([
        'attest',
        'authorize-pcrs',
        '--key',
        join(base, `${signer}.key`),
        '--pcrs',
        PCRS,
        '--values',
        values,
        '--label',
        'kernel 6.1.0-28',
        '-o',
        join(base, `${signer}-kernel-6.1.0-28.json`),
      ]);

    const repo = join(base, 'repo');
    await initRepository({ dir: repo });
    keys = await writeKeys(base);
    const v3 = await packBytes(base, Buffer.alloc(5000, 3), keys, { name: 'mnist', version: 3, file: 'mnist' });
    targets[3] = (
      await addRelease({
        dir: repo,
        packagePath: v3.packagePath,
        version: 3,
        pcrAuthorizationPaths: [join(base, 'other-kernel-6.1.0-28.json')],
      })
    ).path;
    const v4 = await packBytes(base, Buffer.alloc(5000, 4), keys, { name: 'mnist', version: 4, file: 'mnist' });
    const added = await runCli([
      '--json',
      'release',
      'add',
      v4.packagePath,
      '--version',
      '4',
      '--dir',
      repo,
      '--pcr-authorization',
      join(base, 'op-kernel-6.1.0-28.json'),
    ]);
    assert.equal(added.code, 0, added.stderr);
    targets[4] = (JSON.parse(added.stdout) as { path: string }).path;
    await publishRepository(repo);
    server = await serveDirectory({ after: (fn) => closers.push(fn) }, releasePaths(repo).repository);

    const metadataDir = join(dev, 'tuf');
    await provisionTrustedRoot(metadataDir, await readFile(join(releasePaths(repo).metadata, '1.root.json')));
    options = {
      metadataDir,
      metadataBaseUrl: `${server.url}/metadata`,
      targetBaseUrl: `${server.url}/targets`,
      downloadDir: join(base, 'download'),
      publisherKeys: [keys.signer.publicKey],
      minimumVersion: 0,
      pcrPolicyKey: (await devicePcrPolicyKey(dev))!,
    };
  });

  after(async () => {
    for (const close of closers) await close();
    wipe(contentKey?.bytes ?? Buffer.alloc(0));
    await tpm?.remove();
    if (tpm) await rm(tpm.ca.dir, { recursive: true, force: true });
    if (base) await rm(base, { recursive: true, force: true });
  });

  test('the authorization is a target of its own, named in the package target', async () => {
    const t = (await signedTargets()).targets;
    assert.deepEqual(
      Object.keys(t).filter((p) => p.startsWith('mnist/4/pcr-authorizations/')),
      ['mnist/4/pcr-authorizations/op-kernel-6.1.0-28.json'],
    );
    const named = (t[targets[4]!]!.custom as { edgeguard: { pcrAuthorizations: Array<{ target: string }> } }).edgeguard
      .pcrAuthorizations;
    assert.deepEqual(
      named.map((n) => n.target),
      ['mnist/4/pcr-authorizations/op-kernel-6.1.0-28.json'],
    );
    assert.ok(options.pcrPolicyKey, 'the device has an authorized binding policy');
  });

  test('release add refuses a file that is not an authorization, before anything is staged', async () => {
    const pkg = await packBytes(base, Buffer.alloc(100, 5), keys, { name: 'mnist', version: 5, file: 'mnist' });
    const bogus = join(base, 'bogus.json');
    await writeFile(bogus, '{"type":"something-else"}');
    await assert.rejects(
      addRelease({ dir: join(base, 'repo'), packagePath: pkg.packagePath, version: 5, pcrAuthorizationPaths: [bogus] }),
      (e) => isEdgeguardError(e, 'EG_FORMAT'),
    );
    await assert.rejects(
      addRelease({
        dir: join(base, 'repo'),
        packagePath: pkg.packagePath,
        version: 5,
        pcrAuthorizationPaths: [join(base, 'op-kernel-6.1.0-28.json'), join(base, 'op-kernel-6.1.0-28.json')],
      }),
      (e) => isEdgeguardError(e, 'EG_USAGE'),
    );
  });

  test('an authorization signed by another key refuses the release, typed; nothing is left behind', async () => {
    await assert.rejects(
      fetchRelease({ ...options, target: targets[3]! }),
      (e) =>
        isEdgeguardError(e, 'EG_RELEASE_REFUSED') &&
        e.details?.reason === 'pcr-authorization' &&
        isEdgeguardError((e as Error).cause, 'EG_WRONG_KEY'),
    );
    assert.deepEqual(await readdir(options.downloadDir), []);
  });

  test('a tampered authorization fails the TUF hash', async () => {
    const t = (await signedTargets()).targets;
    const path = 'mnist/4/pcr-authorizations/op-kernel-6.1.0-28.json';
    const url = `/targets/mnist/4/pcr-authorizations/${t[path]!.hashes.sha256}.op-kernel-6.1.0-28.json`;
    const original = await readFile(join(base, 'op-kernel-6.1.0-28.json'), 'utf8');
    server.overrides.set(
      url,
      Buffer.from(original.replace('"label": "kernel 6.1.0-28"', '"label": "kernel 6.1.0-29"')),
    );
    try {
      await assert.rejects(
        fetchRelease({ ...options, target: targets[4]! }),
        (e) => isEdgeguardError(e, 'EG_RELEASE_REFUSED') && e.details?.reason === 'hash-mismatch',
      );
    } finally {
      server.overrides.delete(url);
    }
  });

  test('installed before the reboot, the shipped authorization lets the binding key unwrap after kernel B boots', async () => {
    const fetched = await fetchRelease({ ...options, target: targets[4]! });
    assert.equal(fetched.pcrAuthorizations.length, 1);
    const installed = await installPcrAuthorizations(dev, fetched.release, fetched.pcrAuthorizations);
    assert.deepEqual(installed, [join(dev, PCR_AUTHORIZATIONS_DIR, 'mnist-4-op-kernel-6.1.0-28.json')]);

    // Reboot (TPM Reset: PCRs cleared) into kernel B; swtpm comes back on another port.
    await new TpmClient({ tcti: tpm.tcti }).shutdown();
    await tpm.stop();
    tpm = await startSwtpm({ stateDir: tpm.stateDir, ca: tpm.ca });
    await playBoot(new TpmClient({ tcti: tpm.tcti }), SHA256, syntheticBootEvents(kernelUpdateBoot(), SHA256));

    const store = await openDeviceKeyStore(dev, { tcti: tpm.tcti });
    const key = await store.unwrapContentKey(wrapped);
    try {
      assert.deepEqual(key.bytes, contentKey.bytes, 'the same model key, through the same binding key');
    } finally {
      wipe(key.bytes);
    }
    // It was the shipped authorization that did it: without it, kernel B locks the key.
    await rm(installed[0]!);
    await assert.rejects((await openDeviceKeyStore(dev, { tcti: tpm.tcti })).unwrapContentKey(wrapped), (e) =>
      isEdgeguardError(e, 'EG_TPM_POLICY'),
    );
  });
});
