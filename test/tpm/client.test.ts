/**
 * The TPM client against a real swtpm started for this file: PCRs, the binding key (same public key
 * as `tpm2_readpublic -f pem`, policy equal to PolicyPCR computed in TypeScript), RSA-OAEP unwrap
 * under the PCR policy, seal/unseal, EK/AK, certify and quote verified in pure TypeScript,
 * ActivateCredential against `tpm2_makecredential -T none`, and typed errors. Tests that break the
 * policy (extend a policy PCR) run last.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { constants, createHash, createPublicKey, publicEncrypt, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isEdgeguardError } from '../../src/errors/index.ts';
import {
  TPM_ALG,
  TpmClient,
  parsePcrSelection,
  parseTpm2bPublic,
  policyPcrDigest,
  tpmPublicKey,
  verifyCertify,
  verifyQuote,
  objectName,
  hasAttributes,
  type BindingKey,
  type EndorsementKeys,
} from '../../src/tpm/index.ts';
import { TPM_SKIP, startTestTpm, stopTestTpm, type Swtpm } from '../helpers/swtpm.ts';

const POLICY = 'sha256:0,1,2,3,4,5,7';

/** Run tpm2-tools directly (the oracle), flushing afterwards as swtpm has no resource manager. */
function tool(tcti: string, cwd: string, args: string[]): Buffer {
  const out = execFileSync(args[0]!, args.slice(1), {
    cwd,
    env: { ...process.env, TPM2TOOLS_TCTI: tcti },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  execFileSync('tpm2_flushcontext', ['-t'], { cwd, env: { ...process.env, TPM2TOOLS_TCTI: tcti } });
  return out;
}

describe('TpmClient against swtpm', { skip: TPM_SKIP }, () => {
  let tpm: Swtpm | undefined;
  let client: TpmClient;
  let binding: BindingKey;
  let endorsement: EndorsementKeys;
  const work = mkdtempSync(join(tmpdir(), 'eg-tpm-client-'));

  before(async () => {
    tpm = await startTestTpm();
    client = new TpmClient({ tcti: tpm.tcti });
  });
  after(async () => {
    await stopTestTpm(tpm);
    rmSync(work, { recursive: true, force: true });
  });

  test('extend: the new PCR value is SHA-256(old || digest)', async () => {
    const before = (await client.readPcrs('sha256:16')).sha256![16]!;
    const digest = createHash('sha256').update('edgeguard test event').digest();
    await client.extendPcr(16, 'sha256', digest);
    const after = (await client.readPcrs('sha256:16')).sha256![16]!;
    assert.deepEqual(after, createHash('sha256').update(before).update(digest).digest());
  });

  test('binding key: attributes, TPM-computed policy equals PolicyPCR in TypeScript, name equals tpm2_load -n', async () => {
    binding = await client.createBindingKey(POLICY);
    const pub = binding.publicArea;
    assert.ok(hasAttributes(pub, 'fixedTPM', 'fixedParent', 'sensitiveDataOrigin', 'decrypt'));
    assert.ok(!hasAttributes(pub, 'userWithAuth'));
    assert.deepEqual(pub.authPolicy, binding.policyDigest);
    const current = await client.readPcrs(POLICY);
    assert.deepEqual(policyPcrDigest(parsePcrSelection(POLICY), current, TPM_ALG.SHA256), binding.policyDigest);
    assert.deepEqual(await client.loadKey(binding), objectName(pub));
  });

  test('our TPM2B_PUBLIC parse gives the same public key as tpm2_readpublic -f pem', async () => {
    writeFileSync(join(work, 'b.pub'), binding.public);
    writeFileSync(join(work, 'b.priv'), binding.private);
    tool(tpm!.tcti, work, [
      'tpm2_createprimary',
      '-Q',
      '-C',
      'o',
      '-g',
      'sha256',
      '-G',
      'rsa2048:null:aes128cfb',
      '-c',
      'srk.ctx',
    ]);
    tool(tpm!.tcti, work, ['tpm2_load', '-Q', '-C', 'srk.ctx', '-u', 'b.pub', '-r', 'b.priv', '-c', 'b.ctx']);
    tool(tpm!.tcti, work, ['tpm2_readpublic', '-Q', '-c', 'b.ctx', '-f', 'pem', '-o', 'b.pem']);
    const theirs = createPublicKey(readFileSync(join(work, 'b.pem'))).export({ type: 'spki', format: 'der' });
    const ours = tpmPublicKey(parseTpm2bPublic(binding.public)).export({ type: 'spki', format: 'der' });
    assert.deepEqual(ours, theirs);
  });

  test('RSA-OAEP-SHA256 decrypt under the PCR policy session returns the plaintext', async () => {
    const secret = randomBytes(32);
    const ct = publicEncrypt(
      { key: tpmPublicKey(binding.publicArea), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
      secret,
    );
    assert.deepEqual(await client.rsaDecrypt(binding, binding.pcrs, ct), secret);
    // Garbage ciphertext: the TPM's OAEP check fails with a typed error.
    await assert.rejects(client.rsaDecrypt(binding, binding.pcrs, randomBytes(256)), (e: unknown) =>
      isEdgeguardError(e),
    );
  });

  test('EK and AK; TPM2_Certify of the binding key verifies in pure TypeScript', async () => {
    endorsement = await client.attestation.createEndorsementKeys();
    const ak = parseTpm2bPublic(endorsement.ak.public);
    assert.deepEqual(objectName(ak), endorsement.akName);
    const ek = parseTpm2bPublic(endorsement.ekPublic);
    assert.ok(hasAttributes(ek, 'fixedTPM', 'restricted', 'decrypt'));
    const c = await client.attestation.certify(endorsement.ak, binding);
    const v = verifyCertify(ak, binding.publicArea, c.attest, c.signature);
    assert.equal(v.attest.attested.kind, 'certify');
    if (v.attest.attested.kind === 'certify') assert.deepEqual(v.attest.attested.name, binding.name);
  });

  test('the EK certificate from NV is signed by the local CA', async () => {
    const der = await client.attestation.readEkCertificate();
    assert.ok(der && der.length > 0);
    writeFileSync(join(work, 'ek.der'), der);
    execFileSync('openssl', ['x509', '-inform', 'der', '-in', join(work, 'ek.der'), '-out', join(work, 'ek.pem')]);
    const r = execFileSync(
      'openssl',
      ['verify', '-partial_chain', '-CAfile', tpm!.ca.issuerCertPath, join(work, 'ek.pem')],
      { encoding: 'utf8' },
    );
    assert.match(r, /OK/);
  });

  test('quote verifies against nonce and PCR values', async () => {
    const nonce = randomBytes(16);
    const q = await client.attestation.quote(endorsement.ak, 'sha256:0,1,2,3,7,16', nonce);
    const v = verifyQuote(parseTpm2bPublic(endorsement.ak.public), q.attest, q.signature, nonce, q.pcrValues);
    assert.equal(v.pcrSelect[0]!.pcrs.join(','), '0,1,2,3,7,16');
  });

  test('activateCredential recovers what tpm2_makecredential -T none made for (EK, AK name)', async () => {
    const secret = randomBytes(32);
    writeFileSync(join(work, 'ek.pub'), endorsement.ekPublic);
    writeFileSync(join(work, 'secret.bin'), secret);
    execFileSync(
      'tpm2_makecredential',
      ['-T', 'none', '-e', 'ek.pub', '-s', 'secret.bin', '-n', endorsement.akName.toString('hex'), '-o', 'cred.bin'],
      { cwd: work, stdio: 'pipe' },
    );
    const blob = readFileSync(join(work, 'cred.bin'));
    assert.deepEqual(await client.attestation.activateCredential(endorsement.ak, blob), secret);
    // A credential made for another name is refused by the TPM.
    execFileSync(
      'tpm2_makecredential',
      ['-T', 'none', '-e', 'ek.pub', '-s', 'secret.bin', '-n', '000b' + '11'.repeat(32), '-o', 'cred2.bin'],
      { cwd: work, stdio: 'pipe' },
    );
    await assert.rejects(
      client.attestation.activateCredential(endorsement.ak, readFileSync(join(work, 'cred2.bin'))),
      (e: unknown) => isEdgeguardError(e),
    );
  });

  test('TPM object memory exhausted by another program: flushed and retried; without flushing, EG_TPM_RESOURCES', async () => {
    const env = { ...process.env, TPM2TOOLS_TCTI: tpm!.tcti };
    const fill = () => {
      // swtpm holds 3 transient objects; tpm2-tools without a resource manager leaves each loaded.
      for (let i = 0; i < 3; i++) {
        execFileSync('tpm2_createprimary', ['-Q', '-C', 'o', '-G', 'ecc256', '-c', `fill${i}.ctx`], {
          cwd: work,
          env,
          stdio: 'pipe',
        });
      }
    };
    fill();
    const noFlush = new TpmClient({ tcti: tpm!.tcti, flush: false, attempts: 1 });
    await assert.rejects(noFlush.loadKey(binding), (e: unknown) => isEdgeguardError(e, 'EG_TPM_RESOURCES'));
    assert.deepEqual(await client.loadKey(binding), binding.name);
  });

  test('an unreachable TPM is EG_TPM_UNAVAILABLE', async () => {
    const dead = new TpmClient({ tcti: 'swtpm:host=127.0.0.1,port=1' });
    await assert.rejects(dead.readPcrs('sha256:0'), (e: unknown) => isEdgeguardError(e, 'EG_TPM_UNAVAILABLE'));
  });

  test('after tpm2_pcrextend of a policy PCR: unseal and decrypt are refused with EG_TPM_POLICY', async () => {
    const sealed = await client.seal(Buffer.from('sealed secret'), POLICY);
    assert.equal((await client.unseal(sealed, sealed.pcrs)).toString(), 'sealed secret');
    const secret = randomBytes(32);
    const ct = publicEncrypt(
      { key: tpmPublicKey(binding.publicArea), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
      secret,
    );
    // The real tool, as an attacker or a changed boot chain would.
    execFileSync('tpm2_pcrextend', [`7:sha256=${'ab'.repeat(32)}`], {
      env: { ...process.env, TPM2TOOLS_TCTI: tpm!.tcti },
    });
    await assert.rejects(client.unseal(sealed, sealed.pcrs), (e: unknown) => isEdgeguardError(e, 'EG_TPM_POLICY'));
    await assert.rejects(client.rsaDecrypt(binding, binding.pcrs, ct), (e: unknown) =>
      isEdgeguardError(e, 'EG_TPM_POLICY'),
    );
    // Nothing leaks through the error.
    await client.rsaDecrypt(binding, binding.pcrs, ct).catch((e: Error & { details?: unknown }) => {
      assert.ok(!JSON.stringify(e.details).includes(secret.toString('hex')));
    });
  });

  test('no transient objects or sessions are left in the TPM', () => {
    const env = { ...process.env, TPM2TOOLS_TCTI: tpm!.tcti };
    for (const cap of ['handles-transient', 'handles-loaded-session', 'handles-saved-session']) {
      assert.equal(execFileSync('tpm2_getcap', [cap], { env, encoding: 'utf8' }).trim(), '', cap);
    }
  });
});
