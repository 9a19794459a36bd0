import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { chmod, stat } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import {
  contentKeyId,
  encodeContentKeyFile,
  generateContentKey,
  parseContentKeyFile,
  readContentKeyFile,
  generateSigningKey,
  signEnvelope,
  verifyEnvelope,
  pae,
  parseEnvelope,
  writePrivateFile,
  readPrivateSigningKey,
  encodePrivateKeyPem,
} from '../../src/crypto/index.ts';
import { EdgeguardError } from '../../src/errors/index.ts';
import { tempDir } from '../helpers/workspace.ts';

test('content key id is the RFC 7638 thumbprint (test vector computed independently)', () => {
  // RFC 7638 thumbprint of an oct JWK with k = base64url(32 zero bytes).
  const zero = Buffer.alloc(32);
  const expected = createHash('sha256')
    .update('{"k":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","kty":"oct"}')
    .digest('base64url');
  assert.equal(contentKeyId(zero), expected);
});

test('content key files round-trip and are written 0600', async (t) => {
  const dir = await tempDir(t);
  const key = generateContentKey();
  const p = join(dir, 'model.key');
  await writePrivateFile(p, encodeContentKeyFile(key));
  assert.equal((await stat(p)).mode & 0o777, 0o600);
  const back = await readContentKeyFile(p);
  assert.equal(back.kid, key.kid);
  assert.ok(back.bytes.equals(key.bytes));
  await assert.rejects(writePrivateFile(p, 'x'), (e: EdgeguardError) => e.code === 'EG_EXISTS');
});

test('a key file readable by others is refused (EG_KEY_PERMISSIONS)', async (t) => {
  const dir = await tempDir(t);
  const p = join(dir, 'model.key');
  await writePrivateFile(p, encodeContentKeyFile(generateContentKey()));
  await chmod(p, 0o644);
  await assert.rejects(readContentKeyFile(p), (e: EdgeguardError) => e.code === 'EG_KEY_PERMISSIONS');
});

test('malformed content key files are refused with EG_KEY_FORMAT', () => {
  const good = JSON.parse(encodeContentKeyFile(generateContentKey()));
  const bad = [
    'not json',
    '[]',
    'null',
    JSON.stringify({ ...good, kty: 'EC' }),
    JSON.stringify({ ...good, k: 'AAAA' }),
    JSON.stringify({ ...good, k: '!!!!' }),
    JSON.stringify({ ...good, kid: 'someone-elses-id' }),
  ];
  for (const text of bad)
    assert.throws(
      () => parseContentKeyFile(text),
      (e: EdgeguardError) => e.code === 'EG_KEY_FORMAT',
      text,
    );
  fc.assert(
    fc.property(fc.string(), (s) => {
      try {
        parseContentKeyFile(s);
      } catch (e) {
        assert.ok(e instanceof EdgeguardError);
      }
    }),
  );
});

test('DSSE: PAE matches the specification example and envelopes verify for both algorithms', () => {
  // From the DSSE protocol document: PAE("http://example.com/HelloWorld", "hello world").
  assert.equal(
    pae('http://example.com/HelloWorld', Buffer.from('hello world')).toString(),
    'DSSEv1 29 http://example.com/HelloWorld 11 hello world',
  );
  for (const alg of ['ecdsa-p256', 'ed25519'] as const) {
    const k = generateSigningKey(alg);
    const env = signEnvelope('application/x', Buffer.from('payload'), k);
    assert.equal(verifyEnvelope(env, [k.publicKey], 'application/x').payload.toString(), 'payload');
    assert.throws(
      () => verifyEnvelope(env, [generateSigningKey(alg).publicKey], 'application/x'),
      (e: EdgeguardError) => e.code === 'EG_SIGNATURE_INVALID',
    );
    assert.throws(
      () => verifyEnvelope(env, [k.publicKey], 'application/y'),
      (e: EdgeguardError) => e.code === 'EG_SIGNATURE_INVALID',
    );
    const edited = { ...env, payload: Buffer.from('payloaD').toString('base64') };
    assert.throws(
      () => verifyEnvelope(edited, [k.publicKey], 'application/x'),
      (e: EdgeguardError) => e.code === 'EG_SIGNATURE_INVALID',
    );
  }
});

test('property: arbitrary text is never accepted as an envelope that verifies', () => {
  const k = generateSigningKey();
  fc.assert(
    fc.property(fc.string(), (s) => {
      try {
        verifyEnvelope(parseEnvelope(s), [k.publicKey], 'application/vnd.in-toto+json');
        assert.fail('accepted');
      } catch (e) {
        assert.ok(e instanceof EdgeguardError);
      }
    }),
  );
});

test('signing keys: a non-key file and an RSA key are refused', async (t) => {
  const dir = await tempDir(t);
  const p = join(dir, 'x.key');
  await writePrivateFile(p, 'hello');
  await assert.rejects(readPrivateSigningKey(p), (e: EdgeguardError) => e.code === 'EG_KEY_FORMAT');
  const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 });
  const q = join(dir, 'rsa.key');
  await writePrivateFile(q, encodePrivateKeyPem(rsa.privateKey));
  await assert.rejects(readPrivateSigningKey(q), (e: EdgeguardError) => e.code === 'EG_KEY_FORMAT');
});
