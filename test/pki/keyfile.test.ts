/**
 * CA key files (PKCS#8 + PBES2): a wrong passphrase is EG_WRONG_KEY whichever way OpenSSL fails.
 * AES-CBC has no integrity: about one wrong passphrase in 256 decrypts to garbage with valid
 * padding, and then it is the PKCS#8 decoder that errors (this made a CA test fail once in CI).
 * With 1 PBKDF2 iteration, such a passphrase is found in a few hundred tries.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { decryptPrivateKey, encryptPrivateKey } from '../../src/pki/keyfile.ts';
import { isEdgeguardError } from '../../src/errors/index.ts';

test('a wrong passphrase is EG_WRONG_KEY, also when the garbage happens to have valid padding', () => {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const pem = encryptPrivateKey(privateKey, 'the right passphrase', 1);
  assert.ok(decryptPrivateKey(pem, 'the right passphrase').equals(privateKey));
  const failures = new Set<string>();
  let paddedGarbage = 0;
  for (let i = 0; i < 20000 && paddedGarbage < 2; i++) {
    const wrong = `wrong passphrase ${i}`;
    let raw = '';
    try {
      createPrivateKey({ key: pem, format: 'pem', passphrase: wrong });
    } catch (e) {
      raw = (e as Error).message;
    }
    if (!/bad decrypt/i.test(raw)) paddedGarbage++;
    failures.add(/bad decrypt/i.test(raw) ? 'bad decrypt' : 'decoder');
    assert.throws(
      () => decryptPrivateKey(pem, wrong),
      (e) => isEdgeguardError(e, 'EG_WRONG_KEY'),
      `${wrong}: ${raw}`,
    );
  }
  assert.ok(paddedGarbage > 0, 'no wrong passphrase produced valid padding in 20000 tries (expected about one in 256)');
  assert.deepEqual([...failures].sort(), ['bad decrypt', 'decoder']);
});

test('what is not an encrypted PKCS#8 key is EG_KEY_FORMAT', () => {
  for (const pem of [
    'not a key at all',
    '-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n',
  ]) {
    assert.throws(
      () => decryptPrivateKey(pem, 'whatever passphrase'),
      (e) => isEdgeguardError(e, 'EG_KEY_FORMAT'),
      pem,
    );
  }
});
