/**
 * The wrapped key format and the software provider (no TPM needed): wrap/unwrap round trip, a
 * strict parser (fast-check: any text gives a key or a typed error), wrong device, altered
 * ciphertext, a kid that does not match, key file permissions and the posture label.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, readFile, stat, writeFile } from 'node:fs/promises';
import { generateKeyPairSync } from 'node:crypto';
import { join } from 'node:path';
import fc from 'fast-check';
import { generateContentKey, b64url, encodeContentKeyFile, writePrivateFile } from '../../src/crypto/index.ts';
import { EdgeguardError, isEdgeguardError } from '../../src/errors/index.ts';
import {
  SOFTWARE_POSTURE_LABEL,
  encodeWrappedKeyFile,
  initDevice,
  openDeviceKeyStore,
  parseBindingPublicKey,
  parseWrappedKeyFile,
  readDeviceFile,
  wrapContentKey,
  bindingKeyThumbprint,
} from '../../src/keystore/index.ts';
import { tempDir } from '../helpers/workspace.ts';
import { runCli } from '../helpers/cli.ts';

describe('software key store and wrapped key files', () => {
  test('wipe() zeroes every unwrapped key still held and refuses later unwraps (EG_LOCKED)', async (t) => {
    const dir = join(await tempDir(t, 'eg-ks-wipe-'), 'device');
    await initDevice({ dir });
    const pub = parseBindingPublicKey(await readFile(join(dir, 'binding.pub'), 'utf8'));
    const key = generateContentKey();
    const text = encodeWrappedKeyFile(wrapContentKey(key, pub));
    const store = await openDeviceKeyStore(dir);
    const held = [await store.unwrapContentKey(text), await store.unwrapContentKey(text)];
    for (const k of held) assert.deepEqual(k.bytes, key.bytes);
    store.wipe();
    for (const k of held) assert.deepEqual(k.bytes, Buffer.alloc(32), 'the caller-held key buffer is zeroed');
    await assert.rejects(store.unwrapContentKey(text), (e: unknown) => isEdgeguardError(e, 'EG_LOCKED'));
  });

  test('wipe() during an unwrap in flight: the key that arrives after it is zeroed and refused', async (t) => {
    const dir = join(await tempDir(t, 'eg-ks-wipe-'), 'device');
    await initDevice({ dir });
    const pub = parseBindingPublicKey(await readFile(join(dir, 'binding.pub'), 'utf8'));
    const text = encodeWrappedKeyFile(wrapContentKey(generateContentKey(), pub));
    const store = await openDeviceKeyStore(dir);
    const pending = store.unwrapContentKey(text);
    store.wipe();
    await assert.rejects(pending, (e: unknown) => isEdgeguardError(e, 'EG_LOCKED'));
  });

  test('device init --software, wrap to binding.pub, unwrap: same key, labelled not hardware-bound', async (t) => {
    const dir = join(await tempDir(t, 'eg-ks-sw-'), 'device');
    const r = await initDevice({ dir });
    assert.equal(r.device.provider, 'software');
    assert.equal(r.device.posture, SOFTWARE_POSTURE_LABEL);
    assert.equal((await stat(join(dir, 'binding.key'))).mode & 0o777, 0o600);
    const pub = parseBindingPublicKey(await readFile(join(dir, 'binding.pub'), 'utf8'));
    const key = generateContentKey();
    const text = encodeWrappedKeyFile(wrapContentKey(key, pub));
    const store = await openDeviceKeyStore(dir);
    assert.equal(store.posture.label, SOFTWARE_POSTURE_LABEL);
    assert.equal(store.posture.hardwareBound, false);
    const out = await store.unwrapContentKey(text);
    assert.equal(out.kid, key.kid);
    assert.deepEqual(out.bytes, key.bytes);
    assert.equal((await readDeviceFile(dir)).bindingKey, bindingKeyThumbprint(pub));
    await assert.rejects(initDevice({ dir }), (e: unknown) => isEdgeguardError(e, 'EG_EXISTS'));
  });

  test('refusals: another device, altered ciphertext, mismatched kid, loose permissions', async (t) => {
    const base = await tempDir(t, 'eg-ks-sw2-');
    await initDevice({ dir: join(base, 'a') });
    await initDevice({ dir: join(base, 'b') });
    const a = await openDeviceKeyStore(join(base, 'a'));
    const b = await openDeviceKeyStore(join(base, 'b'));
    const key = generateContentKey();
    const w = wrapContentKey(key, a.bindingPublicKey);
    await assert.rejects(b.unwrapContentKey(encodeWrappedKeyFile(w)), (e: unknown) =>
      isEdgeguardError(e, 'EG_WRONG_KEY'),
    );
    const ct = Buffer.from(w.ciphertext, 'base64url');
    ct[10]! ^= 1;
    await assert.rejects(a.unwrapContentKey(encodeWrappedKeyFile({ ...w, ciphertext: b64url(ct) })), (e: unknown) =>
      isEdgeguardError(e, 'EG_TAMPERED'),
    );
    const other = generateContentKey();
    await assert.rejects(a.unwrapContentKey(encodeWrappedKeyFile({ ...w, kid: other.kid })), (e: unknown) =>
      isEdgeguardError(e, 'EG_TAMPERED'),
    );
    await chmod(join(base, 'a', 'binding.key'), 0o644);
    await assert.rejects(openDeviceKeyStore(join(base, 'a')), (e: unknown) =>
      isEdgeguardError(e, 'EG_KEY_PERMISSIONS'),
    );
  });

  test('parser: strict members and forms', () => {
    const key = generateContentKey();
    const good = JSON.parse(
      encodeWrappedKeyFile(wrapContentKey(key, parseBindingPublicKey(generateRsaPem()))),
    ) as Record<string, unknown>;
    assert.equal(parseWrappedKeyFile(JSON.stringify(good)).kid, key.kid);
    const cases: Array<[Record<string, unknown> | string, string]> = [
      ['not json', 'EG_KEY_FORMAT'],
      [{ ...good, extra: 1 }, 'EG_KEY_FORMAT'],
      [{ ...good, version: 2 }, 'EG_UNSUPPORTED'],
      [{ ...good, alg: 'RSA1_5' }, 'EG_UNSUPPORTED'],
      [{ ...good, kid: 'short' }, 'EG_KEY_FORMAT'],
      [{ ...good, ciphertext: 'AAAA' }, 'EG_KEY_FORMAT'],
      [{ ...good, ciphertext: '+/+/' }, 'EG_KEY_FORMAT'],
      [{ ...good, type: 'jwe' }, 'EG_KEY_FORMAT'],
      // Values String() cannot convert (it threw a TypeError): refused with the typed error.
      [{ ...good, version: [{ toString: 0 }] }, 'EG_UNSUPPORTED'],
      [{ ...good, alg: { toString: 0, valueOf: 0 } }, 'EG_UNSUPPORTED'],
    ];
    for (const [c, code] of cases) {
      assert.throws(
        () => parseWrappedKeyFile(typeof c === 'string' ? c : JSON.stringify(c)),
        (e: unknown) => isEdgeguardError(e, code as 'EG_KEY_FORMAT'),
        JSON.stringify(c),
      );
    }
  });

  test('property: any text, or a mutated file, parses or fails with a typed error', () => {
    const good = encodeWrappedKeyFile(wrapContentKey(generateContentKey(), parseBindingPublicKey(generateRsaPem())));
    fc.assert(
      fc.property(
        fc.oneof(fc.string(), fc.json()),
        fc.nat({ max: good.length - 1 }),
        fc.string({ maxLength: 3 }),
        (s, i, ins) => {
          for (const text of [s, good.slice(0, i) + ins + good.slice(i + 1)]) {
            try {
              parseWrappedKeyFile(text);
            } catch (e) {
              assert.ok(e instanceof EdgeguardError, String(e));
            }
          }
        },
      ),
      { numRuns: 500 },
    );
  });

  test('property: arbitrary JSON in any member parses or fails with a typed error', () => {
    const good = JSON.parse(
      encodeWrappedKeyFile(wrapContentKey(generateContentKey(), parseBindingPublicKey(generateRsaPem()))),
    ) as Record<string, unknown>;
    fc.assert(
      fc.property(fc.constantFrom(...Object.keys(good)), fc.jsonValue(), (member, value) => {
        try {
          parseWrappedKeyFile(JSON.stringify({ ...good, [member]: value }));
        } catch (e) {
          assert.ok(e instanceof EdgeguardError, String(e));
        }
      }),
      { numRuns: 500 },
    );
  });

  test('CLI: device init --software warns, key wrap and device status', async (t) => {
    const base = await tempDir(t, 'eg-ks-cli-');
    const dev = join(base, 'dev');
    const init = await runCli(['device', 'init', '--dir', dev, '--software', '--json']);
    assert.equal(init.code, 0, init.stderr);
    assert.match(init.stderr, /software key: not hardware-bound/);
    assert.equal(JSON.parse(init.stdout).posture, SOFTWARE_POSTURE_LABEL);
    const key = generateContentKey();
    await writePrivateFile(join(base, 'model.key'), encodeContentKeyFile(key));
    const wrap = await runCli([
      'key',
      'wrap',
      join(base, 'model.key'),
      '--to',
      join(dev, 'binding.pub'),
      '-o',
      join(base, 'model.key.wrapped'),
    ]);
    assert.equal(wrap.code, 0, wrap.stderr);
    const w = parseWrappedKeyFile(await readFile(join(base, 'model.key.wrapped'), 'utf8'));
    assert.equal(w.kid, key.kid);
    assert.ok(!(await readFile(join(base, 'model.key.wrapped'), 'utf8')).includes(b64url(key.bytes)));
    const status = await runCli(['device', 'status', '--dir', dev]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /software key: not hardware-bound/);
    const both = await runCli([
      'device',
      'init',
      '--dir',
      join(base, 'x'),
      '--software',
      '--tpm',
      'device:/dev/tpmrm0',
    ]);
    assert.equal(both.code, 2);
    assert.match(both.stderr, /^EG_USAGE/);
    await writeFile(join(base, 'bad.pub'), 'nope');
    const bad = await runCli([
      'key',
      'wrap',
      join(base, 'model.key'),
      '--to',
      join(base, 'bad.pub'),
      '-o',
      join(base, 'o'),
    ]);
    assert.match(bad.stderr, /^EG_KEY_FORMAT/);
  });
});

function generateRsaPem(): string {
  return generateKeyPairSync('rsa', { modulusLength: 2048 })
    .publicKey.export({ type: 'spki', format: 'pem' })
    .toString();
}
