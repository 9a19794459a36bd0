import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  constants,
  createECDH,
  createHmac,
  generateKeyPairSync,
  privateDecrypt,
  randomBytes,
  type KeyObject,
} from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { makeCredential, parseCredentialBlob, kdfa, kdfe } from '../../src/attest/index.ts';
import { parseTpm2bPublic, TpmWriter, TpmClient, type TpmPublic, type EndorsementKeys } from '../../src/tpm/index.ts';
import { isEdgeguardError } from '../../src/errors/index.ts';
import { startTestTpm, stopTestTpm, TPM_SKIP, type Swtpm } from '../helpers/swtpm.ts';

/** The TCG default EK template (EK Credential Profile 2.0, B.3.3) around a software RSA key we hold. */
function softwareEk(): { pub: TpmPublic; tpm2b: Buffer; privateKey: KeyObject } {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const n = Buffer.from(publicKey.export({ format: 'jwk' }).n!, 'base64url');
  const tpmt = new TpmWriter()
    .u16(0x0001) // TPM_ALG_RSA
    .u16(0x000b) // nameAlg SHA256
    .u32(0x000300b2) // fixedTPM|fixedParent|sensitiveDataOrigin|adminWithPolicy|restricted|decrypt
    .tpm2b(Buffer.from('837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa', 'hex'))
    .u16(0x0006)
    .u16(128)
    .u16(0x0043) // AES-128-CFB
    .u16(0x0010) // scheme NULL
    .u16(2048)
    .u32(0)
    .tpm2b(n)
    .toBuffer();
  const tpm2b = new TpmWriter().tpm2b(tpmt).toBuffer();
  return { pub: parseTpm2bPublic(tpm2b), tpm2b, privateKey };
}

describe('MakeCredential against tpm2_makecredential -T none', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'eg-mkcred-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('produces byte-identical output for the same seed, and the same structure for a random one', () => {
    const ek = softwareEk();
    const akName = Buffer.concat([Buffer.from([0x00, 0x0b]), randomBytes(32)]);
    const secret = randomBytes(32);
    writeFileSync(join(dir, 'ek.pub'), ek.tpm2b);
    writeFileSync(join(dir, 'secret'), secret);
    execFileSync(
      'tpm2_makecredential',
      [
        '-T',
        'none',
        '-u',
        join(dir, 'ek.pub'),
        '-s',
        join(dir, 'secret'),
        '-n',
        akName.toString('hex'),
        '-o',
        join(dir, 'cred.out'),
      ],
      { stdio: 'pipe' },
    );
    const golden = readFileSync(join(dir, 'cred.out'));
    const parsedGolden = parseCredentialBlob(golden);
    // We hold the "EK" private key, so we can recover the tool's random seed...
    const seed = privateDecrypt(
      {
        key: ek.privateKey,
        padding: constants.RSA_PKCS1_OAEP_PADDING,
        oaepHash: 'sha256',
        oaepLabel: Buffer.from('IDENTITY\0', 'latin1'),
      },
      parsedGolden.encSecret,
    );
    assert.equal(seed.length, 32);
    // ...and re-run ours with it: everything but the (randomized) OAEP ciphertext must match exactly.
    const ours = makeCredential(ek.pub, akName, secret, { seed });
    const parsedOurs = parseCredentialBlob(ours.blob);
    assert.deepEqual(parsedOurs.integrityHmac, parsedGolden.integrityHmac);
    assert.deepEqual(parsedOurs.encIdentity, parsedGolden.encIdentity);
    assert.equal(parsedOurs.encSecret.length, parsedGolden.encSecret.length);
    assert.deepEqual(ours.blob.subarray(0, 8 + ours.idObject.length), golden.subarray(0, 8 + ours.idObject.length));
    assert.equal(ours.blob.length, golden.length);
    // Our OAEP ciphertext opens to the same seed.
    const ourSeed = privateDecrypt(
      {
        key: ek.privateKey,
        padding: constants.RSA_PKCS1_OAEP_PADDING,
        oaepHash: 'sha256',
        oaepLabel: Buffer.from('IDENTITY\0', 'latin1'),
      },
      parsedOurs.encSecret,
    );
    assert.deepEqual(ourSeed, seed);
    // A random seed gives the same layout.
    const random = parseCredentialBlob(makeCredential(ek.pub, akName, secret).blob);
    assert.equal(random.integrityHmac.length, 32);
    assert.equal(random.encIdentity.length, 2 + secret.length);
    assert.notDeepEqual(random.encIdentity, parsedGolden.encIdentity);
  });

  it("ECC EK: recovers the tool's seed with KDFe, matches it byte for byte, and our own secret opens with the EK key", () => {
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const jwk = publicKey.export({ format: 'jwk' });
    const ekX = Buffer.from(jwk.x!, 'base64url');
    const tpmt = new TpmWriter()
      .u16(0x0023)
      .u16(0x000b)
      .u32(0x000300b2)
      .tpm2b(Buffer.from('837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa', 'hex'))
      .u16(0x0006)
      .u16(128)
      .u16(0x0043) // AES-128-CFB
      .u16(0x0010) // scheme NULL
      .u16(0x0003) // NIST P-256
      .u16(0x0010) // kdf NULL
      .tpm2b(ekX)
      .tpm2b(Buffer.from(jwk.y!, 'base64url'))
      .toBuffer();
    const tpm2b = new TpmWriter().tpm2b(tpmt).toBuffer();
    const ek = parseTpm2bPublic(tpm2b);
    const akName = Buffer.concat([Buffer.from([0x00, 0x0b]), randomBytes(32)]);
    const secret = randomBytes(32);
    writeFileSync(join(dir, 'ecc-ek.pub'), tpm2b);
    writeFileSync(join(dir, 'ecc-secret'), secret);
    execFileSync(
      'tpm2_makecredential',
      [
        '-T',
        'none',
        '-u',
        join(dir, 'ecc-ek.pub'),
        '-s',
        join(dir, 'ecc-secret'),
        '-n',
        akName.toString('hex'),
        '-o',
        join(dir, 'ecc-cred.out'),
      ],
      { stdio: 'pipe' },
    );
    const d = Buffer.from(privateKey.export({ format: 'jwk' }).d!, 'base64url');
    const seedOf = (encSecret: Buffer) => {
      const x = encSecret.subarray(2, 2 + encSecret.readUInt16BE(0));
      const rest = encSecret.subarray(2 + x.length);
      const y = rest.subarray(2, 2 + rest.readUInt16BE(0));
      const ecdh = createECDH('prime256v1');
      ecdh.setPrivateKey(d);
      const z = ecdh.computeSecret(Buffer.concat([Buffer.from([4]), x, y]));
      return kdfe('sha256', z, 'IDENTITY', x, ekX, 256);
    };
    const golden = parseCredentialBlob(readFileSync(join(dir, 'ecc-cred.out')));
    const ours = parseCredentialBlob(makeCredential(ek, akName, secret, { seed: seedOf(golden.encSecret) }).blob);
    assert.deepEqual(ours.integrityHmac, golden.integrityHmac);
    assert.deepEqual(ours.encIdentity, golden.encIdentity);
    // Our own (random ephemeral) output: the EK's private key derives the seed whose HMAC verifies.
    const mine = parseCredentialBlob(makeCredential(ek, akName, secret).blob);
    assert.equal(mine.encSecret.length, 68);
    const seed = seedOf(mine.encSecret);
    const hmac = createHmac('sha256', kdfa('sha256', seed, 'INTEGRITY', Buffer.alloc(0), Buffer.alloc(0), 256))
      .update(mine.encIdentity)
      .update(akName)
      .digest();
    assert.deepEqual(hmac, mine.integrityHmac);
  });

  it('KDFa follows SP 800-108 counter mode (multi-block output, label terminator)', () => {
    const key = Buffer.alloc(32, 7);
    const a = kdfa('sha256', key, 'STORAGE', Buffer.from('u'), Buffer.from('v'), 512);
    assert.equal(a.length, 64);
    // Block i = HMAC(key, [i]32 || label || 0x00 || U || V || [bits]32), computed here by hand.
    const block = (i: number) =>
      createHmac('sha256', key)
        .update(
          Buffer.concat([
            Buffer.from([0, 0, 0, i]),
            Buffer.from('STORAGE\0u' + 'v', 'latin1'),
            Buffer.from([0, 0, 2, 0]),
          ]),
        )
        .digest();
    assert.deepEqual(a, Buffer.concat([block(1), block(2)]));
    // The bit count is part of every block, so a shorter request is not a prefix of a longer one.
    assert.notDeepEqual(kdfa('sha256', key, 'STORAGE', Buffer.from('u'), Buffer.from('v'), 256), a.subarray(0, 32));
    assert.deepEqual(
      kdfa('sha256', key, 'STORAGE\0', Buffer.from('u'), Buffer.from('v'), 256),
      kdfa('sha256', key, 'STORAGE', Buffer.from('u'), Buffer.from('v'), 256),
    );
  });

  it('refuses unsupported inputs', () => {
    const ek = softwareEk();
    const name = Buffer.concat([Buffer.from([0x00, 0x0b]), randomBytes(32)]);
    assert.throws(
      () => makeCredential(ek.pub, name, Buffer.alloc(0)),
      (e) => isEdgeguardError(e, 'EG_INTERNAL'),
    );
    assert.throws(
      () => makeCredential(ek.pub, name, Buffer.alloc(33)),
      (e) => isEdgeguardError(e, 'EG_INTERNAL'),
    );
    assert.throws(
      () => makeCredential(ek.pub, Buffer.from([0x00, 0x0b, 1, 2]), Buffer.alloc(16)),
      (e) => isEdgeguardError(e, 'EG_TPM_STRUCTURE'),
    );
    assert.throws(
      () => makeCredential(ek.pub, Buffer.from([0x40, 0x00, 0x00, 0x01]), Buffer.alloc(16)),
      (e) => isEdgeguardError(e, 'EG_TPM_STRUCTURE'),
    );
  });

  it('parses credential blobs strictly (bad input and random bytes never crash)', () => {
    const ek = softwareEk();
    const blob = makeCredential(ek.pub, Buffer.concat([Buffer.from([0, 0x0b]), randomBytes(32)]), randomBytes(32)).blob;
    assert.throws(
      () => parseCredentialBlob(Buffer.concat([blob, Buffer.from([0])])),
      (e) => isEdgeguardError(e),
    );
    assert.throws(
      () => parseCredentialBlob(blob.subarray(0, blob.length - 1)),
      (e) => isEdgeguardError(e),
    );
    const badMagic = Buffer.from(blob);
    badMagic[0] = 0;
    assert.throws(
      () => parseCredentialBlob(badMagic),
      (e) => isEdgeguardError(e, 'EG_TPM_STRUCTURE'),
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
        try {
          parseCredentialBlob(bytes);
        } catch (e) {
          return isEdgeguardError(e);
        }
        return true;
      }),
      { numRuns: 500 },
    );
  });
});

describe('MakeCredential activated by a real TPM (swtpm)', { skip: TPM_SKIP }, () => {
  let tpm: Swtpm;
  let client: TpmClient;
  let keys: EndorsementKeys;
  before(async () => {
    tpm = await startTestTpm();
    client = new TpmClient({ tcti: tpm.tcti });
    keys = await client.attestation.createEndorsementKeys();
  });
  after(async () => stopTestTpm(tpm));

  it('releases the credential to the AK it was made for', async () => {
    const secret = randomBytes(32);
    const made = makeCredential(parseTpm2bPublic(keys.ekPublic), keys.akName, secret);
    const got = await client.attestation.activateCredential(keys.ak, made.blob);
    assert.deepEqual(got, secret);
  });

  it('releases the credential made for an ECC EK (tpm2-tools driven directly: ECC EK, ECC AK)', () => {
    const d = mkdtempSync(join(tmpdir(), 'eg-ecc-act-'));
    const env = { ...process.env, TPM2TOOLS_TCTI: tpm.tcti };
    const run = (...a: string[]) => execFileSync(a[0]!, a.slice(1), { env, cwd: d, stdio: ['ignore', 'pipe', 'pipe'] });
    const flush = () => {
      for (const f of ['-t', '-s', '-l']) {
        try {
          run('tpm2_flushcontext', f);
        } catch {
          // nothing of that kind loaded
        }
      }
    };
    try {
      run('tpm2_createek', '-c', 'ek.ctx', '-G', 'ecc', '-u', 'ek.pub');
      flush();
      run(
        'tpm2_createak',
        '-C',
        'ek.ctx',
        '-c',
        'ak.ctx',
        '-G',
        'ecc',
        '-g',
        'sha256',
        '-s',
        'ecdsa',
        '-u',
        'ak.pub',
        '-r',
        'ak.priv',
        '-n',
        'ak.name',
      );
      flush();
      const secret = randomBytes(32);
      writeFileSync(
        join(d, 'cred.in'),
        makeCredential(parseTpm2bPublic(readFileSync(join(d, 'ek.pub'))), readFileSync(join(d, 'ak.name')), secret)
          .blob,
      );
      run('tpm2_createek', '-c', 'ek.ctx', '-G', 'ecc', '-u', 'ek2.pub');
      flush();
      run('tpm2_startauthsession', '--policy-session', '-S', 's.ctx');
      run('tpm2_policysecret', '-S', 's.ctx', '-c', 'e');
      run('tpm2_load', '-C', 'ek.ctx', '-u', 'ak.pub', '-r', 'ak.priv', '-c', 'ak.ctx', '-P', 'session:s.ctx');
      flush();
      run('tpm2_startauthsession', '--policy-session', '-S', 's2.ctx');
      run('tpm2_policysecret', '-S', 's2.ctx', '-c', 'e');
      const out = run(
        'tpm2_activatecredential',
        '-c',
        'ak.ctx',
        '-C',
        'ek.ctx',
        '-i',
        'cred.in',
        '-P',
        'session:s2.ctx',
      ).toString('latin1');
      assert.equal(/^certinfodata:([0-9a-f]+)/.exec(out)?.[1], secret.toString('hex'));
    } finally {
      flush();
      rmSync(d, { recursive: true, force: true });
    }
  });

  it('is refused by the TPM for another AK name, or when altered', async () => {
    const secret = randomBytes(32);
    const otherName = Buffer.concat([keys.akName.subarray(0, 2), randomBytes(32)]);
    await assert.rejects(
      client.attestation.activateCredential(
        keys.ak,
        makeCredential(parseTpm2bPublic(keys.ekPublic), otherName, secret).blob,
      ),
      (e) => isEdgeguardError(e),
    );
    const made = makeCredential(parseTpm2bPublic(keys.ekPublic), keys.akName, secret);
    const tampered = Buffer.from(made.blob);
    tampered[8 + 2 + 2 + 5]! ^= 0x01; // inside the integrity HMAC
    await assert.rejects(client.attestation.activateCredential(keys.ak, tampered), (e) => isEdgeguardError(e));
  });
});
