/**
 * The device's A/B install against a real repository over HTTP, real ONNX Runtime and a software
 * key store: install, switch, smoke test, refusal below the floor, recovery of an interrupted
 * install, and a slot altered outside the installer.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { abFixture, type AbFixture } from './ab-fixture.ts';
import {
  SOFTWARE_FLOOR_LABEL,
  SoftwareFloor,
  addRelease,
  publishRepository,
  readPointer,
  recoverInstall,
  recoverSlots,
  updateDevice,
  type DeviceUpdateOptions,
} from '../../src/release/index.ts';
import { isEdgeguardError } from '../../src/errors/index.ts';
import { packMnist } from './ab-fixture.ts';
import { writeKeys } from '../helpers/workspace.ts';

function options(f: AbFixture, target: string): DeviceUpdateOptions {
  return {
    install: {
      dataDir: f.dataDir,
      publicKeys: [f.keys.signer.publicKey],
      contentKey: { wrapped: f.wrappedKeyPath, device: f.deviceDir, store: f.store },
      floor: new SoftwareFloor(f.dataDir),
    },
    metadataDir: f.metadataDir,
    metadataBaseUrl: `${f.server.url}/metadata`,
    targetBaseUrl: `${f.server.url}/targets`,
    downloadDir: join(f.dataDir, 'download'),
    target,
  };
}

test('installs v1 into slot a, then v2 into slot b; the floor follows minVersion', async (t) => {
  const f = await abFixture(t);
  const first = await updateDevice(options(f, f.targets[1]!));
  assert.equal(first.ok, true, JSON.stringify(first.error));
  assert.equal(first.slot, 'a');
  assert.equal(first.smokeLabel, '3');
  assert.equal(first.floor.value, 1);
  const second = await updateDevice(options(f, f.targets[2]!));
  assert.equal(second.ok, true, JSON.stringify(second.error));
  assert.equal(second.slot, 'b');
  assert.deepEqual(second.previous, { name: 'mnist', version: 1 });
  const state = await recoverSlots(f.dataDir);
  assert.equal(state.active?.manifest.release.version, 2);
  assert.equal(state.previous?.manifest.release.version, 1, 'the old slot is kept as previous');
  const floorFile = JSON.parse(await readFile(join(f.dataDir, 'anti-rollback.json'), 'utf8'));
  assert.equal(floorFile.label, SOFTWARE_FLOOR_LABEL);
  assert.deepEqual(floorFile.floors, { model: 2 });
  // Same release again: nothing written.
  const again = await updateDevice(options(f, f.targets[2]!));
  assert.equal(again.ok, true);
  assert.equal(again.unchanged, true);
  assert.deepEqual(await readdir(join(f.dataDir, 'download')), [], 'downloads are removed');
});

test('a release below the floor is refused before download; the active slot stays', async (t) => {
  const f = await abFixture(t);
  assert.equal((await updateDevice(options(f, f.targets[2]!))).ok, true);
  const back = await updateDevice(options(f, f.targets[1]!));
  assert.equal(back.ok, false);
  assert.equal(back.error?.code, 'EG_RELEASE_REFUSED');
  assert.equal(back.error?.reason, 'below-minimum');
  assert.equal((await recoverSlots(f.dataDir)).active?.manifest.release.version, 2);
});

test('a failing smoke test keeps the old slot active and removes the new one', async (t) => {
  const f = await abFixture(t, {
    releases: [
      { version: 1, arch: 'mnist-mlp', minVersion: 1 },
      { version: 2, arch: 'mnist-cnn', minVersion: 2, label: '7' },
    ],
  });
  assert.equal((await updateDevice(options(f, f.targets[1]!))).ok, true);
  const bad = await updateDevice(options(f, f.targets[2]!));
  assert.equal(bad.ok, false);
  assert.equal(bad.error?.code, 'EG_INSTALL_FAILED');
  assert.match(bad.error!.message, /smoke test gave label "3", the release expects "7"/);
  const state = await recoverSlots(f.dataDir);
  assert.equal(state.active?.slot, 'a');
  assert.equal(state.previous, undefined);
  assert.deepEqual((await readdir(join(f.dataDir, 'releases'))).sort(), ['a', 'active']);
  assert.equal(await new SoftwareFloor(f.dataDir).read('model'), 1, 'the floor is not raised by a failed install');
});

test('a package the publisher signed but whose content key is not the device one fails the trial load', async (t) => {
  const f = await abFixture(t);
  assert.equal((await updateDevice(options(f, f.targets[1]!))).ok, true);
  // v3: same publisher, another content key: TUF and the OMS signature pass, decryption does not.
  const other = await writeKeys(f.tmp, 'ecdsa-p256', 'other');
  const dir = join(f.tmp, 'v3');
  await mkdir(dir);
  const pkg = await packMnist(dir, { ...other, signer: f.keys.signer }, 3, 'mnist-cnn');
  const target = await addRelease({ dir: f.repo, packagePath: pkg, version: 3 });
  await publishRepository(f.repo);
  const out = await updateDevice(options(f, target.path));
  assert.equal(out.ok, false);
  assert.equal(out.error?.code, 'EG_INSTALL_FAILED');
  assert.equal((await recoverSlots(f.dataDir)).active?.manifest.release.version, 1);
});

test('recovery discards staging and a placed slot the pointer does not name', async (t) => {
  const f = await abFixture(t);
  assert.equal((await updateDevice(options(f, f.targets[1]!))).ok, true);
  const root = join(f.dataDir, 'releases');
  await mkdir(join(root, '.staging-b'));
  await writeFile(join(root, '.staging-b', 'package.egm'), 'half');
  await mkdir(join(root, 'b'));
  await writeFile(join(root, 'b', 'slot.json'), '{}');
  await writeFile(join(root, 'active.tmp-1-abcd'), 'partial pointer');
  const state = await recoverSlots(f.dataDir);
  assert.equal(state.active?.slot, 'a');
  assert.deepEqual((await readdir(root)).sort(), ['a', 'active']);
});

test('a slot or pointer altered outside the installer fails closed (EG_TAMPERED)', async (t) => {
  const f = await abFixture(t);
  assert.equal((await updateDevice(options(f, f.targets[1]!))).ok, true);
  const pkg = join(f.dataDir, 'releases', 'a', 'package.egm');
  const bytes = await readFile(pkg);
  bytes[bytes.length - 1]! ^= 1;
  await writeFile(pkg, bytes);
  await assert.rejects(recoverSlots(f.dataDir), (e) => isEdgeguardError(e, 'EG_TAMPERED'));
  for (const text of ['', '{', '{"type":"edgeguard-active-slot"}']) {
    await writeFile(join(f.dataDir, 'releases', 'active'), text);
    await assert.rejects(readPointer(f.dataDir), (e) => isEdgeguardError(e, 'EG_TAMPERED'));
  }
});

test('an active slot below the floor (swapped outside the installer) is refused at start', async (t) => {
  const f = await abFixture(t);
  assert.equal((await updateDevice(options(f, f.targets[1]!))).ok, true);
  const floor = new SoftwareFloor(f.dataDir);
  await floor.raise('model', 5);
  await assert.rejects(recoverInstall({ dataDir: f.dataDir, floor }), (e) => {
    assert.ok(isEdgeguardError(e, 'EG_RELEASE_REFUSED'));
    assert.equal(e.details?.reason, 'below-minimum');
    return true;
  });
});
