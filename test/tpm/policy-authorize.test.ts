/**
 * Authorized PCR policies against a real swtpm started for this file: the PolicyAuthorize and
 * PolicyOR digests computed in TypeScript equal tpm2-tools' trial sessions; a binding key under
 * PolicyOR(PolicyPCR, PolicyAuthorize) unwraps on its provisioned PCRs, is refused after an
 * extend, unwraps again with an operator-signed authorization of the new values (verified by the
 * TPM), and is refused with an authorization signed by another key or for other values; the
 * identity key (no PCR policy) unwraps whatever the PCRs hold.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { constants, generateKeyPairSync, publicEncrypt, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isEdgeguardError } from '../../src/errors/index.ts';
import {
  TpmClient,
  parsePcrSelection,
  parsePcrAuthorization,
  parseTpm2bPublic,
  policyAuthorizeDigest,
  policyOrDigest,
  policySignerPublic,
  signPcrAuthorization,
  tpmPublicKey,
  hasAttributes,
  type BindingKey,
  type KeyPolicy,
  type SignedPcrPolicy,
} from '../../src/tpm/index.ts';
import { TPM_SKIP, startTestTpm, stopTestTpm, type Swtpm } from '../helpers/swtpm.ts';

const SEL = parsePcrSelection('sha256:0,7,16');

function tool(tcti: string, cwd: string, args: string[]): Buffer {
  const env = { ...process.env, TPM2TOOLS_TCTI: tcti };
  const out = execFileSync(args[0]!, args.slice(1), { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  execFileSync('tpm2_flushcontext', ['-t'], { cwd, env });
  return out;
}

describe('authorized PCR policies against swtpm', { skip: TPM_SKIP }, () => {
  let tpm: Swtpm | undefined;
  let client: TpmClient;
  let binding: BindingKey;
  const operator = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const stranger = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const signer = policySignerPublic(operator.publicKey);
  const secret = randomBytes(32);
  let ciphertext: Buffer;
  const work = mkdtempSync(join(tmpdir(), 'eg-tpm-authz-'));

  /** Sign the PCRs' current values (over `sel`) with `key`, parse the file back: what a device holds. */
  const signCurrent = async (sel = SEL, key = operator.privateKey): Promise<SignedPcrPolicy> => {
    const file = signPcrAuthorization({ privateKey: key, selection: sel, values: await client.readPcrs(sel) });
    const p = parsePcrAuthorization(JSON.stringify(file));
    return { selection: p.selection, approvedPolicy: p.approvedPolicy, signature: p.signature };
  };

  const policy = (authorization?: SignedPcrPolicy): KeyPolicy => ({
    kind: 'authorized',
    pcrs: SEL,
    provisionedPolicy: binding.pcrPolicyDigest,
    signer,
    ...(authorization ? { authorization } : {}),
  });

  before(async () => {
    tpm = await startTestTpm();
    client = new TpmClient({ tcti: tpm.tcti });
  });
  after(async () => {
    await stopTestTpm(tpm);
    rmSync(work, { recursive: true, force: true });
  });

  test('PolicyAuthorize and PolicyOR digests equal tpm2-tools trial sessions', () => {
    writeFileSync(join(work, 'signer.pub'), signer.public);
    writeFileSync(join(work, 'ref.bin'), 'edgeguard-pcr-policy/1');
    tool(tpm!.tcti, work, [
      'tpm2_loadexternal',
      '-Q',
      '-C',
      'o',
      '-u',
      'signer.pub',
      '-c',
      'signer.ctx',
      '-n',
      'signer.name',
    ]);
    assert.deepEqual(readFileSync(join(work, 'signer.name')), signer.name, 'TPM name of the signer');
    tool(tpm!.tcti, work, ['tpm2_startauthsession', '-S', 'trial.ctx']);
    tool(tpm!.tcti, work, [
      'tpm2_policyauthorize',
      '-Q',
      '-S',
      'trial.ctx',
      '-L',
      'authorize.bin',
      '-q',
      'ref.bin',
      '-n',
      'signer.name',
    ]);
    assert.deepEqual(readFileSync(join(work, 'authorize.bin')), policyAuthorizeDigest(signer.name));
    writeFileSync(join(work, 'a.bin'), Buffer.alloc(32, 1));
    tool(tpm!.tcti, work, ['tpm2_startauthsession', '-S', 'trial.ctx']);
    tool(tpm!.tcti, work, [
      'tpm2_policyor',
      '-Q',
      '-S',
      'trial.ctx',
      '-L',
      'or.bin',
      '-l',
      'sha256:a.bin,authorize.bin',
    ]);
    assert.deepEqual(
      readFileSync(join(work, 'or.bin')),
      policyOrDigest([Buffer.alloc(32, 1), policyAuthorizeDigest(signer.name)]),
    );
  });

  test('the binding key carries PolicyOR(PolicyPCR, PolicyAuthorize) and unwraps on its provisioned PCRs', async () => {
    binding = await client.createBindingKey(SEL, signer);
    const pub = parseTpm2bPublic(binding.public);
    assert.deepEqual(pub.authPolicy, policyOrDigest([binding.pcrPolicyDigest, policyAuthorizeDigest(signer.name)]));
    assert.ok(!hasAttributes(pub, 'userWithAuth'), 'every use needs the policy');
    ciphertext = publicEncrypt(
      { key: tpmPublicKey(pub), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
      secret,
    );
    assert.deepEqual(await client.rsaDecrypt(binding, policy(), ciphertext), secret);
  });

  test('after an extend: refused; with a signed authorization of the new values: unwraps', async () => {
    await client.extendPcr(7, 'sha256', Buffer.alloc(32, 0xab));
    await assert.rejects(client.rsaDecrypt(binding, policy(), ciphertext), (e) => isEdgeguardError(e, 'EG_TPM_POLICY'));
    const a = await signCurrent();
    assert.deepEqual(await client.rsaDecrypt(binding, policy(a), ciphertext), secret);

    // A subset of the PCRs is an approval too (the operator chooses what it vouches for).
    const sub = await signCurrent(parsePcrSelection('sha256:7,16'));
    assert.deepEqual(await client.rsaDecrypt(binding, policy(sub), ciphertext), secret);

    // Signed by a key the binding key does not name: the TPM's ticket is for another name.
    const forged = await signCurrent(SEL, stranger.privateKey);
    await assert.rejects(
      client.rsaDecrypt(binding, policy(forged), ciphertext),
      (e) => isEdgeguardError(e) && /^EG_TPM/.test(e.code),
    );

    // Signed, but for values the PCRs no longer hold.
    await client.extendPcr(7, 'sha256', Buffer.alloc(32, 0xcd));
    await assert.rejects(client.rsaDecrypt(binding, policy(a), ciphertext), (e) =>
      isEdgeguardError(e, 'EG_TPM_POLICY'),
    );
  });

  test('a sealed object under the same authorized policy unseals with a signed authorization', async () => {
    const sealed = await client.seal(secret, SEL, signer);
    const pol = (a?: SignedPcrPolicy): KeyPolicy => ({
      kind: 'authorized',
      pcrs: SEL,
      provisionedPolicy: sealed.pcrPolicyDigest,
      signer,
      ...(a ? { authorization: a } : {}),
    });
    assert.deepEqual(await client.unseal(sealed, pol()), secret);
    await client.extendPcr(0, 'sha256', Buffer.alloc(32, 0x11));
    await assert.rejects(client.unseal(sealed, pol()), (e) => isEdgeguardError(e, 'EG_TPM_POLICY'));
    assert.deepEqual(await client.unseal(sealed, pol(await signCurrent())), secret);
  });

  test('the identity key has no PCR policy: it unwraps after the boot state changed', async () => {
    const id = await client.createIdentityKey();
    assert.equal(id.publicArea.authPolicy.length, 0);
    assert.ok(hasAttributes(id.publicArea, 'fixedTPM', 'fixedParent', 'userWithAuth'));
    const ct = publicEncrypt(
      { key: tpmPublicKey(id.publicArea), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
      secret,
    );
    await client.extendPcr(16, 'sha256', Buffer.alloc(32, 0x77));
    assert.deepEqual(await client.rsaDecrypt(id, { kind: 'none' }, ct), secret);
  });
});
