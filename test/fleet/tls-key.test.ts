import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey, webcrypto } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SoftwareKeyStore } from '../../src/keystore/index.ts';
import { createWrappedTlsKey, loadWrappedTlsKey } from '../../src/fleet/index.ts';
import { isEdgeguardError } from '../../src/errors/index.ts';

describe('device TLS key at rest (wrapped to the binding key)', () => {
  let dir: string;
  let store: SoftwareKeyStore;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'eg-tlskey-'));
    store = await SoftwareKeyStore.create(join(dir, 'binding.key'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('round-trips through the key store and never holds the key in the clear', async () => {
    const path = join(dir, 'tls-key.json');
    const keys = await createWrappedTlsKey(store, path);
    const text = readFileSync(path, 'utf8');
    assert.doesNotMatch(text, /PRIVATE KEY/);
    const pem = await loadWrappedTlsKey(store, path);
    const spki = Buffer.from(await webcrypto.subtle.exportKey('spki', keys.publicKey));
    assert.deepEqual(createPublicKey(pem).export({ type: 'spki', format: 'der' }), spki);
    await assert.rejects(
      createWrappedTlsKey(store, path),
      (e) => isEdgeguardError(e, 'EG_EXISTS'),
      'never overwritten',
    );
  });

  it("refuses an altered file and another device's binding key", async () => {
    const path = join(dir, 'tls-key-2.json');
    await createWrappedTlsKey(store, path);
    const file = JSON.parse(readFileSync(path, 'utf8')) as { ciphertext: string };
    const ct = Buffer.from(file.ciphertext, 'base64url');
    ct[5]! ^= 0x01;
    writeFileSync(join(dir, 'altered.json'), JSON.stringify({ ...file, ciphertext: ct.toString('base64url') }));
    await assert.rejects(loadWrappedTlsKey(store, join(dir, 'altered.json')), (e) =>
      isEdgeguardError(e, 'EG_TAMPERED'),
    );
    const other = await SoftwareKeyStore.create(join(dir, 'other.key'));
    await assert.rejects(loadWrappedTlsKey(other, path), (e) => isEdgeguardError(e));
  });

  it('refuses malformed files with a typed error', async () => {
    for (const [name, content] of [
      ['a', 'not json'],
      ['b', '{}'],
      [
        'c',
        JSON.stringify({
          type: 'edgeguard-fleet-tls-key',
          version: 2,
          wrappedKey: 'x',
          iv: 'AAAAAAAAAAAAAAAA',
          ciphertext: 'AA',
        }),
      ],
      [
        'd',
        JSON.stringify({
          type: 'edgeguard-fleet-tls-key',
          version: 1,
          wrappedKey: 'x',
          iv: 'AAAAAAAAAAAAAAAA',
          ciphertext: 'AA',
          extra: 1,
        }),
      ],
    ] as const) {
      writeFileSync(join(dir, name), content);
      await assert.rejects(
        loadWrappedTlsKey(store, join(dir, name)),
        (e) => isEdgeguardError(e, 'EG_KEY_FORMAT'),
        name,
      );
    }
    await assert.rejects(loadWrappedTlsKey(store, join(dir, 'missing')), (e) => isEdgeguardError(e, 'EG_NOT_FOUND'));
  });
});
