/**
 * The one content-key resolver every entry point uses: a key file (labelled not hardware-bound),
 * a key wrapped to this device (the device's posture), and typed refusals for a missing wrapped
 * file and a key wrapped to another device.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readContentKeyFile } from '../../src/crypto/index.ts';
import { isEdgeguardError } from '../../src/errors/index.ts';
import {
  SOFTWARE_POSTURE_LABEL,
  initDevice,
  resolveContentKey,
  wrapContentKey,
  encodeWrappedKeyFile,
  openDeviceKeyStore,
} from '../../src/keystore/index.ts';
import { tempDir, writeKeys } from '../helpers/workspace.ts';

test('a key file resolves to its key, labelled not hardware-bound', async (t) => {
  const dir = await tempDir(t, 'eg-ck-file-');
  const keys = await writeKeys(dir);
  const { key, posture } = await resolveContentKey({ file: keys.contentKeyPath });
  assert.equal(key.kid, keys.contentKey.kid);
  assert.deepEqual(posture, {
    provider: 'key-file',
    hardwareBound: false,
    label: 'content key file: not hardware-bound',
  });
});

test('a wrapped key resolves through the device key store, with its posture; other devices and missing files refuse', async (t) => {
  const base = await tempDir(t, 'eg-ck-wrapped-');
  const keys = await writeKeys(base);
  await initDevice({ dir: join(base, 'a') });
  await initDevice({ dir: join(base, 'b') });
  const a = await openDeviceKeyStore(join(base, 'a'));
  const wrappedPath = join(base, 'model.key.wrapped');
  const contentKey = await readContentKeyFile(keys.contentKeyPath);
  await writeFile(wrappedPath, encodeWrappedKeyFile(wrapContentKey(contentKey, a.bindingPublicKey)));

  const { key, posture } = await resolveContentKey({ wrapped: wrappedPath, device: join(base, 'a') });
  assert.equal(key.kid, keys.contentKey.kid);
  assert.deepEqual(posture, { provider: 'software', hardwareBound: false, label: SOFTWARE_POSTURE_LABEL });

  await assert.rejects(resolveContentKey({ wrapped: wrappedPath, device: join(base, 'b') }), (e: unknown) =>
    isEdgeguardError(e, 'EG_WRONG_KEY'),
  );
  await assert.rejects(
    resolveContentKey({ wrapped: join(base, 'absent.wrapped'), device: join(base, 'a') }),
    (e: unknown) => isEdgeguardError(e),
  );
});
