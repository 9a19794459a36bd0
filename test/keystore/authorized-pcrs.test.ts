/**
 * Boot changes on a device whose binding key was made with the operator's PCR policy key (real
 * swtpm, the CLI as an operator runs it):
 *
 * - an AUTHORIZED kernel update (PCR 4 extended, the operator signs the new values with `attest
 *   authorize-pcrs`, the file lands in DIR/pcr-authorizations/): the same binding key unwraps the
 *   same model key again, no re-provisioning; `device status` says which authorization applies;
 * - an UNAUTHORIZED change (PCR 7: Secure Boot state): the model key is refused (EG_TPM_POLICY),
 *   `device status` exits 5 and lists the PCRs that differ, yet the TLS key (identity key, no PCR
 *   policy) still opens and the AK still quotes, so the device can report;
 * - a device directory from before identity keys: its TLS key, wrapped to the binding key, opens
 *   while the PCRs match and is rewrapped to a new identity key, after which a boot change no
 *   longer locks it out.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, rm, writeFile, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateContentKey, type ContentKey } from '../../src/crypto/index.ts';
import { isEdgeguardError } from '../../src/errors/index.ts';
import {
  DEVICE_FILES,
  PCR_AUTHORIZATIONS_DIR,
  encodeWrappedKeyFile,
  initDevice,
  openDeviceIdentityStore,
  openDeviceKeyStore,
  parseWrappedKeyFile,
  readDeviceFile,
  wrapContentKey,
  type KeyStore,
} from '../../src/keystore/index.ts';
import { createWrappedTlsKey, loadDeviceTlsKey } from '../../src/fleet/index.ts';
import { TpmClient, parsePcrSelection, parseTpm2bPublic, verifyQuote } from '../../src/tpm/index.ts';
import { TPM_SKIP, startTestTpm, stopTestTpm, type Swtpm } from '../helpers/swtpm.ts';
import { runCli } from '../helpers/cli.ts';

const PCRS = 'sha256:0,1,2,3,4,5,7,16';

describe('authorized PCR policies on a device (swtpm)', { skip: TPM_SKIP }, () => {
  let tpm: Swtpm | undefined;
  let base: string;
  let dev: string;
  let contentKey: ContentKey;
  let wrapped: string;
  let tlsPath: string;
  let tlsPem: string;

  const unwrap = async () => (await openDeviceKeyStore(dev)).unwrapContentKey(wrapped);
  const tlsStores = async (): Promise<{ binding: KeyStore; identity: KeyStore }> => ({
    binding: await openDeviceKeyStore(dev),
    identity: (await openDeviceIdentityStore(dev))!,
  });

  before(async () => {
    tpm = await startTestTpm();
    base = await mkdtemp(join(tmpdir(), 'eg-authz-'));
    dev = join(base, 'device');
    const key = await runCli(['attest', 'policy-key', 'create', '-o', join(base, 'pcr-policy'), '--json']);
    assert.equal(key.code, 0, key.stderr);
    const init = await runCli([
      'device',
      'init',
      '--dir',
      dev,
      '--tpm',
      tpm.tcti,
      '--pcrs',
      PCRS,
      '--pcr-policy-key',
      join(base, 'pcr-policy.pub'),
    ]);
    assert.equal(init.code, 0, init.stderr);
    assert.match(init.stdout, /PolicyOR\(PolicyPCR sha256:0,1,2,3,4,5,7,16, PolicyAuthorize/);
    // The floor's baselines index is written under the same PolicyOR session the key is used with.
    assert.match(
      init.stdout,
      /anti-rollback floor \(TPM counters at 0x01800100\.\., baselines at 0x01800103\): provisioned/,
    );
    contentKey = generateContentKey();
    const binding = (await openDeviceKeyStore(dev)).bindingPublicKey;
    wrapped = encodeWrappedKeyFile(wrapContentKey(contentKey, binding));
    tlsPath = join(base, 'tls-key.json');
    await createWrappedTlsKey((await openDeviceIdentityStore(dev))!, tlsPath);
  });
  after(async () => {
    await stopTestTpm(tpm);
    if (base) await rm(base, { recursive: true, force: true });
  });

  test('provisioned state: the model key unwraps, the TLS key is wrapped to the identity key', async () => {
    const k = await unwrap();
    assert.deepEqual(k.bytes, contentKey.bytes);
    const d = await readDeviceFile(dev);
    assert.equal(d.tpm?.policyKind, 'pcr-or-authorized');
    const identity = (await openDeviceIdentityStore(dev))!;
    const tls = JSON.parse(await readFile(tlsPath, 'utf8')) as { wrappedKey: string };
    assert.equal(parseWrappedKeyFile(tls.wrappedKey).bindingKey, identity.posture.bindingKey);
    assert.notEqual(identity.posture.bindingKey, d.bindingKey, 'the identity key is not the binding key');
    tlsPem = await loadDeviceTlsKey(await tlsStores(), tlsPath);
    assert.match(tlsPem, /BEGIN PRIVATE KEY/);
  });

  test('authorized kernel update: refused until the operator signs the new values, then the same key unwraps', async () => {
    const bindingBefore = (await readDeviceFile(dev)).tpm!.bindingName;
    await new TpmClient({ tcti: tpm!.tcti }).extendPcr(4, 'sha256', randomBytes(32));
    await assert.rejects(unwrap(), (e) => isEdgeguardError(e, 'EG_TPM_POLICY'));
    const refused = await runCli(['device', 'status', '--dir', dev, '--json']);
    assert.equal(refused.code, 5, refused.stderr);
    const rs = JSON.parse(refused.stdout);
    assert.equal(rs.ok, false);
    assert.deepEqual(
      rs.tpm.differences.map((d: { bank: string; index: number }) => `${d.bank}:${d.index}`),
      ['sha256:4'],
    );
    assert.match(rs.tpm.ekSha256, /^[0-9a-f]{64}$/);

    const auth = join(dev, PCR_AUTHORIZATIONS_DIR, 'kernel-2.json');
    const signed = await runCli([
      'attest',
      'authorize-pcrs',
      '--key',
      join(base, 'pcr-policy.key'),
      '--pcrs',
      PCRS,
      '--from-device',
      dev,
      '--label',
      'kernel 2',
      '-o',
      auth,
    ]);
    assert.equal(signed.code, 0, signed.stderr);
    const k = await unwrap();
    assert.deepEqual(k.bytes, contentKey.bytes, 'same model key, no re-provisioning');
    assert.equal((await readDeviceFile(dev)).tpm!.bindingName, bindingBefore, 'same binding key');
    const ok = await runCli(['device', 'status', '--dir', dev]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /satisfied by the authorization .*kernel-2\.json/);
    assert.match(ok.stdout, /sha256:4 +provisioned [0-9a-f]{64}/);
  });

  test('unauthorized boot change: model key refused (typed), TLS key still opens, the AK still quotes', async () => {
    const client = new TpmClient({ tcti: tpm!.tcti });
    await client.extendPcr(7, 'sha256', randomBytes(32));
    await assert.rejects(unwrap(), (e) => isEdgeguardError(e, 'EG_TPM_POLICY') && /authorization/.test(e.message));
    const st = await runCli(['device', 'status', '--dir', dev]);
    assert.equal(st.code, 5);
    assert.match(st.stdout, /sha256:7 +provisioned/);
    assert.match(st.stdout, /NOT satisfied/);

    assert.equal(await loadDeviceTlsKey(await tlsStores(), tlsPath), tlsPem, 'the device can still use mTLS');
    const ak = {
      public: await readFile(join(dev, DEVICE_FILES.akTpmPublic)),
      private: await readFile(join(dev, DEVICE_FILES.akTpmPrivate)),
    };
    const nonce = randomBytes(20);
    const q = await client.attestation.quote(ak, PCRS, nonce);
    const v = verifyQuote(parseTpm2bPublic(ak.public), q.attest, q.signature, nonce, q.pcrValues);
    assert.deepEqual(v.pcrSelect, parsePcrSelection(PCRS));
  });

  test('a device from before identity keys: its TLS key is rewrapped to a new identity key and survives a boot change', async () => {
    const old = join(base, 'old-device');
    await initDevice({ dir: old, tcti: tpm!.tcti, pcrs: 'sha256:0,23' });
    // Make it look like a directory written by the previous release.
    const file = JSON.parse(await readFile(join(old, 'device.json'), 'utf8'));
    for (const k of ['policyKind', 'pcrPolicyDigest', 'identityName']) delete file.tpm[k];
    await writeFile(join(old, 'device.json'), JSON.stringify(file, null, 2));
    await rm(join(old, DEVICE_FILES.identityTpmPublic));
    await rm(join(old, DEVICE_FILES.identityTpmPrivate));
    const binding = await openDeviceKeyStore(old);
    const path = join(base, 'old-tls-key.json');
    await createWrappedTlsKey(binding, path);
    assert.equal(await openDeviceIdentityStore(old, { create: false }), undefined);

    const identity = (await openDeviceIdentityStore(old))!;
    assert.ok((await readDeviceFile(old)).tpm!.identityName, 'device.json names the new identity key');
    const pem = await loadDeviceTlsKey({ binding, identity }, path);
    const rewrapped = JSON.parse(await readFile(path, 'utf8')) as { wrappedKey: string };
    assert.equal(parseWrappedKeyFile(rewrapped.wrappedKey).bindingKey, identity.posture.bindingKey);

    await new TpmClient({ tcti: tpm!.tcti }).extendPcr(23, 'sha256', randomBytes(32));
    const oldWrapped = encodeWrappedKeyFile(wrapContentKey(contentKey, binding.bindingPublicKey));
    await assert.rejects(binding.unwrapContentKey(oldWrapped), (e) => isEdgeguardError(e, 'EG_TPM_POLICY'));
    assert.equal(await loadDeviceTlsKey({ binding, identity }, path), pem);
  });
});
