/**
 * The TPM anti-rollback floor on swtpm: floor = counter - baseline, baselines in one NV index that
 * only the binding key's policy session writes. Each kind's floor is its own (a TPM starts every
 * counter at the high-water mark of all its counters), and every way of removing or re-creating
 * an index fails closed with a typed code, never a floor of 0.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestTpm, stopTestTpm, TPM_SKIP, type Swtpm } from '../helpers/swtpm.ts';
import { nvHex, provisionedTpmFloor, tpm2 } from '../helpers/floor.ts';
import { initDevice, TpmKeyStore } from '../../src/keystore/index.ts';
import { isEdgeguardError } from '../../src/errors/index.ts';
import { parseTpm2bPublic } from '../../src/tpm/index.ts';
import {
  FLOOR_BASELINES_DEFINE_ATTRIBUTES,
  FLOOR_BASELINES_SIZE,
  TpmFloor,
  encodeFloorBaselines,
  updateDevice,
} from '../../src/release/index.ts';
import { abFixture } from './ab-fixture.ts';

function rejectsWith(code: string, pattern?: RegExp) {
  return (e: unknown) => {
    assert.ok(isEdgeguardError(e, code as never), `expected ${code}, got ${String(e)}`);
    if (pattern) assert.match((e as Error).message, pattern);
    return true;
  };
}

describe('TPM anti-rollback floor: counters minus baselines', { skip: TPM_SKIP }, () => {
  let tpm: Swtpm | undefined;
  let store: TpmKeyStore;
  let tmp: string;
  let nextBase = 0x01800400;
  /** A fresh floor on this TPM (its own indices; the TPM's counter high-water mark is shared). */
  const freshFloor = async () => {
    const base = nextBase;
    nextBase += 0x10;
    return provisionedTpmFloor(store, base);
  };

  before(async () => {
    tpm = await startTestTpm();
    tmp = await mkdtemp(join(tmpdir(), 'eg-floor-'));
    const init = await initDevice({ dir: join(tmp, 'device'), tcti: tpm.tcti });
    assert.ok(init.store instanceof TpmKeyStore);
    store = init.store;
  });
  after(async () => {
    await stopTestTpm(tpm);
    await rm(tmp, { recursive: true, force: true });
  });

  test('the defect: a model floor of 5 leaves the agent and firmware floors where they were', async (t) => {
    const f = await abFixture(t, { tcti: tpm!.tcti, releases: [{ version: 1, kind: 'agent', minVersion: 1 }] });
    const floor = await provisionedTpmFloor(f.store, 0x01800200);
    assert.deepEqual(await Promise.all((['model', 'agent', 'firmware'] as const).map((k) => floor.read(k))), [0, 0, 0]);
    assert.equal(await floor.raise('model', 5), 5);
    assert.equal(await floor.read('agent'), 0, 'the model counter does not leak into the agent floor');
    // Agent version 1 installs on this TPM whose model floor is 5.
    const out = await updateDevice({
      install: {
        dataDir: f.dataDir,
        publicKeys: [f.keys.signer.publicKey],
        contentKey: { wrapped: f.wrappedKeyPath, device: f.deviceDir, store: f.store },
        floor,
        installers: { agent: ['/bin/true', '{path}'] },
      },
      metadataDir: f.metadataDir,
      metadataBaseUrl: `${f.server.url}/metadata`,
      targetBaseUrl: `${f.server.url}/targets`,
      downloadDir: join(f.dataDir, 'download'),
      target: f.targets[1]!,
    });
    assert.equal(out.ok, true, JSON.stringify(out.error));
    assert.equal(out.floor.value, 1);
    assert.equal(await floor.read('agent'), 1);
    assert.equal(await floor.raise('firmware', 1), 1, 'firmware likewise');
    assert.equal(await floor.read('model'), 5);
    const st = await floor.state();
    assert.equal(st.kinds.agent.counter - st.kinds.agent.baseline, 1n);
  });

  test('a raise never lowers, and one raise is bounded', async () => {
    const floor = await freshFloor();
    assert.equal(await floor.raise('model', 3), 3);
    assert.equal(await floor.raise('model', 2), 3);
    assert.equal(await floor.read('model'), 3);
    await assert.rejects(floor.raise('model', 3 + 4097), rejectsWith('EG_USAGE'));
  });

  test('a removed counter fails closed (never 0); re-created, it never reads lower', async () => {
    const floor = await freshFloor();
    await floor.raise('firmware', 2);
    tpm2(tpm!.tcti, 'tpm2_nvundefine', [nvHex(floor.indexOf('firmware')), '-C', 'o']);
    await assert.rejects(floor.read('firmware'), rejectsWith('EG_FLOOR_TAMPERED', /removed/));
    await assert.rejects(floor.raise('firmware', 1), rejectsWith('EG_FLOOR_TAMPERED'));
    // The attacker defines it again: unwritten, refused; incremented, it restarts at the high-water mark.
    tpm2(tpm!.tcti, 'tpm2_nvdefine', [
      nvHex(floor.indexOf('firmware')),
      '-C',
      'o',
      '-s',
      '8',
      '-a',
      'nt=counter|ownerread|ownerwrite|no_da',
    ]);
    await assert.rejects(floor.read('firmware'), rejectsWith('EG_FLOOR_TAMPERED', /re-created/));
    tpm2(tpm!.tcti, 'tpm2_nvincrement', [nvHex(floor.indexOf('firmware')), '-C', 'o']);
    assert.ok((await floor.read('firmware')) >= 2);
    assert.equal(await floor.read('model'), 0, 'the other kinds are untouched');
  });

  test('a removed baselines index fails closed and names the command that provisions', async () => {
    const floor = await freshFloor();
    await floor.raise('model', 2);
    tpm2(tpm!.tcti, 'tpm2_nvundefine', [nvHex(floor.baselinesIndex), '-C', 'o']);
    await assert.rejects(floor.read('model'), rejectsWith('EG_FLOOR_UNPROVISIONED', /edgeguard device floor init/));
    await assert.rejects(floor.raise('model', 3), rejectsWith('EG_FLOOR_UNPROVISIONED'));
  });

  test('a baselines index re-created with our template but never written fails closed; nothing writes it without the policy', async () => {
    const floor = await freshFloor();
    await floor.raise('model', 4);
    const b = nvHex(floor.baselinesIndex);
    tpm2(tpm!.tcti, 'tpm2_nvundefine', [b, '-C', 'o']);
    const policy = join(tmp, `policy-${b}.bin`);
    await writeFile(policy, parseTpm2bPublic(store.binding.public).authPolicy);
    const size = String(FLOOR_BASELINES_SIZE);
    tpm2(tpm!.tcti, 'tpm2_nvdefine', [b, '-C', 'o', '-s', size, '-a', FLOOR_BASELINES_DEFINE_ATTRIBUTES, '-L', policy]);
    await assert.rejects(floor.read('model'), rejectsWith('EG_FLOOR_TAMPERED', /never written/));
    // Larger baselines (lower floors) without the binding key's session: the TPM refuses, by owner or by index auth.
    const lower = join(tmp, `lower-${b}.bin`);
    await writeFile(lower, encodeFloorBaselines({ model: 1n << 40n, agent: 0n, firmware: 0n }));
    assert.throws(() => tpm2(tpm!.tcti, 'tpm2_nvwrite', [b, '-C', 'o', '-i', lower]), /nvwrite|NV/);
    assert.throws(() => tpm2(tpm!.tcti, 'tpm2_nvwrite', [b, '-i', lower]), /nvwrite|NV/);
    // An unwritten B is a provisioning that stopped: floor init (no --force) redoes it; the counters
    // already hold values, so their raw values become the floors: higher, never lower.
    const r = await floor.provision();
    assert.equal(r.reset, false);
    assert.ok((await floor.read('model')) >= 4);
  });

  test('a baselines index re-created with another policy and larger baselines fails closed (Name mismatch)', async () => {
    const floor = await freshFloor();
    await floor.raise('agent', 3);
    const b = nvHex(floor.baselinesIndex);
    tpm2(tpm!.tcti, 'tpm2_nvundefine', [b, '-C', 'o']);
    tpm2(tpm!.tcti, 'tpm2_nvdefine', [
      b,
      '-C',
      'o',
      '-s',
      String(FLOOR_BASELINES_SIZE),
      '-a',
      'authwrite|authread|ownerread|no_da',
    ]);
    const lower = join(tmp, `forged-${b}.bin`);
    await writeFile(lower, encodeFloorBaselines({ model: 0n, agent: 1n << 40n, firmware: 0n }));
    tpm2(tpm!.tcti, 'tpm2_nvwrite', [b, '-i', lower]);
    await assert.rejects(floor.read('agent'), rejectsWith('EG_FLOOR_TAMPERED', /Name differs/));
  });

  test('the genuine baselines index is write-locked: not even the binding key session rewrites it', async () => {
    const floor = await freshFloor();
    await assert.rejects(
      store.client.nv.writeLocked(
        floor.baselinesIndex,
        encodeFloorBaselines({ model: 1n << 40n, agent: 0n, firmware: 0n }),
        await store.keyPolicy(),
      ),
      (e: unknown) => isEdgeguardError(e) && /NV_LOCKED/.test(String(e.details?.tpmRcName)),
    );
    assert.equal(await floor.read('model'), 0);
  });

  test('legacy raw counters: floor init keeps their floors exactly; a second init is refused; --force resets', async () => {
    const base = 0x01800300;
    const floor = new TpmFloor(store, base);
    // As devices made before baselines left them: owner-authorized counters, the model one raised three times.
    for (const k of ['model', 'agent'] as const)
      tpm2(tpm!.tcti, 'tpm2_nvdefine', [
        nvHex(floor.indexOf(k)),
        '-C',
        'o',
        '-s',
        '8',
        '-a',
        'nt=counter|ownerread|ownerwrite|no_da',
      ]);
    for (let i = 0; i < 3; i++) tpm2(tpm!.tcti, 'tpm2_nvincrement', [nvHex(floor.indexOf('model')), '-C', 'o']);
    const raw = Number(await store.client.nv.counterRead(floor.indexOf('model')));
    assert.ok(raw >= 3);
    await assert.rejects(floor.read('model'), rejectsWith('EG_FLOOR_UNPROVISIONED'), 'never provisioned lazily');
    const r = await floor.provision();
    assert.deepEqual(r.kept, ['model']);
    assert.equal(await floor.read('model'), raw, 'the old floor, exactly');
    assert.equal(await floor.read('agent'), 0, 'a counter never incremented starts at 0');
    assert.equal(await floor.read('firmware'), 0, 'a missing counter is defined and starts at 0');
    assert.equal(await floor.raise('model', raw + 1), raw + 1, 'the owner-authorized counter still raises');
    await assert.rejects(floor.provision(), rejectsWith('EG_EXISTS', /--force/));
    const reset = await floor.provision({ force: true });
    assert.equal(reset.reset, true);
    assert.deepEqual(
      Object.values(reset.state.kinds).map((k) => k.floor),
      [0, 0, 0],
    );
  });

  test('an unprovisioned TPM floor refuses the update and names `edgeguard device floor init`', async (t) => {
    const f = await abFixture(t, { tcti: tpm!.tcti, releases: [{ version: 1, minVersion: 1 }] });
    const out = await updateDevice({
      install: {
        dataDir: f.dataDir,
        publicKeys: [f.keys.signer.publicKey],
        contentKey: { wrapped: f.wrappedKeyPath, device: f.deviceDir, store: f.store },
        floor: new TpmFloor(f.store as TpmKeyStore, 0x01800500),
      },
      metadataDir: f.metadataDir,
      metadataBaseUrl: `${f.server.url}/metadata`,
      targetBaseUrl: `${f.server.url}/targets`,
      downloadDir: join(f.dataDir, 'download'),
      target: f.targets[1]!,
    });
    assert.equal(out.ok, false);
    assert.equal(out.error?.code, 'EG_FLOOR_UNPROVISIONED');
    assert.match(out.error?.message ?? '', /edgeguard device floor init/);
  });
  // Last: it extends a PCR, so the first device's policy no longer holds afterwards.
  test('B is anchored to the binding key policy: another policy reads it as tampered; transferFrom moves it unchanged', async () => {
    const floor = await freshFloor();
    await floor.raise('agent', 2);
    tpm2(tpm!.tcti, 'tpm2_pcrextend', [`7:sha256=${'11'.repeat(32)}`]);
    const other = await initDevice({ dir: join(tmp, 'device-2'), tcti: tpm!.tcti });
    assert.ok(other.store instanceof TpmKeyStore);
    const moved = new TpmFloor(other.store, floor.baseIndex);
    await assert.rejects(moved.read('agent'), rejectsWith('EG_FLOOR_TAMPERED', /Name differs/));
    const st = await moved.transferFrom(store);
    assert.equal(st.kinds.agent.floor, 2);
    assert.equal(await moved.read('agent'), 2);
    await assert.rejects(
      floor.read('agent'),
      rejectsWith('EG_FLOOR_TAMPERED'),
      "the old key's policy no longer matches",
    );
  });
});
