/**
 * NV reads of the anti-rollback floor against an active interposer on the TPM bus: a proxy between
 * tpm2-tools and swtpm that rewrites TPM2_NV_Read answers and re-signs them as anyone can for a
 * session without a session key (test/helpers/tpm-interposer.ts). A plain tpm2_nvread takes the
 * forged value; TpmNv's reads, in an SRK-salted HMAC session, refuse it (EG_TAMPERED), and so does
 * the floor, which never reads lower. Unarmed, the same proxy changes nothing.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startTestTpm, stopTestTpm, TPM_SKIP, type Swtpm } from '../helpers/swtpm.ts';
import { startTpmInterposer, type TpmInterposer } from '../helpers/tpm-interposer.ts';
import { nvHex, provisionedTpmFloor } from '../helpers/floor.ts';
import { initDevice, TpmKeyStore } from '../../src/keystore/index.ts';
import { isEdgeguardError } from '../../src/errors/index.ts';
import { TpmClient, nvName } from '../../src/tpm/index.ts';
import { FLOOR_BASELINES_SIZE, TpmFloor, parseFloorBaselines } from '../../src/release/index.ts';

const run = promisify(execFile);
const BASE = 0x01800500;

function rejectsWith(code: string, pattern?: RegExp) {
  return (e: unknown) => {
    assert.ok(isEdgeguardError(e, code as never), `expected ${code}, got ${String(e)}`);
    if (pattern) assert.match((e as Error).message, pattern);
    return true;
  };
}

/** The interposer's edits: a counter one lower; the model baseline (bytes 8..15 of B) one higher, i.e. its floor one lower. */
const lowerCounter = (d: Buffer) => {
  if (d.length === 8) d.writeBigUInt64BE(d.readBigUInt64BE(0) - 1n);
};
const raiseModelBaseline = (d: Buffer) => {
  if (d.length === FLOOR_BASELINES_SIZE) d[15] = (d[15]! + 1) & 0xff;
};

describe('NV reads against an active TPM bus interposer', { skip: TPM_SKIP }, () => {
  let tpm: Swtpm | undefined;
  let proxy: TpmInterposer | undefined;
  let tmp: string;
  let store: TpmKeyStore;
  let floor: TpmFloor;
  /** The client and the floor whose TPM commands go through the proxy. */
  let proxied: TpmClient;
  let proxiedFloor: TpmFloor;
  const counter = BASE; // the model floor's counter

  /** tpm2_nvread as before this change: tpm2-tools' default (unsalted) session, the index's empty authValue. */
  const plainRead = async (index: number, size: number) =>
    (
      await run('tpm2_nvread', [nvHex(index), '-s', String(size)], {
        env: { ...process.env, TPM2TOOLS_TCTI: proxy!.tcti },
        encoding: 'buffer',
      })
    ).stdout;

  before(async () => {
    tpm = await startTestTpm();
    tmp = await mkdtemp(join(tmpdir(), 'eg-nv-interposer-'));
    const init = await initDevice({ dir: join(tmp, 'device'), tcti: tpm.tcti });
    assert.ok(init.store instanceof TpmKeyStore);
    store = init.store;
    floor = await provisionedTpmFloor(store, BASE);
    await floor.raise('model', 3);
    proxy = await startTpmInterposer(tpm);
    const srkName = await store.client.storageRootKeyName();
    proxied = new TpmClient({ tcti: proxy.tcti, srkName });
    proxiedFloor = new TpmFloor({ client: proxied, binding: store.binding, keyPolicy: () => store.keyPolicy() }, BASE);
  });
  after(async () => {
    await proxy?.close();
    await stopTestTpm(tpm);
    await rm(tmp, { recursive: true, force: true });
  });

  test('unarmed, the proxy changes nothing: the same reads return the true values', async () => {
    proxy!.forge = undefined;
    const value = await store.client.nv.counterRead(counter, 'index');
    assert.ok(value !== undefined && value > 0n);
    assert.equal(await proxied.nv.counterRead(counter, 'index'), value);
    assert.deepEqual(await plainRead(counter, 8), Buffer.from(value.toString(16).padStart(16, '0'), 'hex'));
    const b = floor.baselinesIndex;
    assert.deepEqual(
      await proxied.nv.read(b, FLOOR_BASELINES_SIZE),
      await store.client.nv.read(b, FLOOR_BASELINES_SIZE),
    );
    assert.equal(await proxiedFloor.read('model'), 3);
    assert.equal(proxy!.forged, 0);
  });

  test('armed, the proxy really forges: a plain tpm2_nvread takes a lower counter and a larger baseline', async () => {
    const value = await store.client.nv.counterRead(counter, 'index');
    const trueBaselines = parseFloorBaselines(await store.client.nv.read(floor.baselinesIndex, FLOOR_BASELINES_SIZE));
    proxy!.forge = lowerCounter;
    assert.equal((await plainRead(counter, 8)).readBigUInt64BE(0), value! - 1n);
    proxy!.forge = raiseModelBaseline;
    const forged = parseFloorBaselines(await plainRead(floor.baselinesIndex, FLOOR_BASELINES_SIZE));
    assert.equal(forged.model, trueBaselines.model + 1n);
    assert.equal(proxy!.forged, 2);
    proxy!.forge = undefined;
  });

  test('armed, TpmNv reads fail closed with EG_TAMPERED and a sentence to act on', async () => {
    const integrity = /failed its integrity check.*something between this process and the TPM changed it/;
    proxy!.forge = lowerCounter;
    const before = proxy!.forged;
    await assert.rejects(proxied.nv.counterRead(counter, 'index'), rejectsWith('EG_TAMPERED', integrity));
    await assert.rejects(
      proxied.nv.counterRead(counter, 'index', nvName((await store.client.nv.readPublic(counter))!)),
      rejectsWith('EG_TAMPERED', integrity),
    );
    proxy!.forge = raiseModelBaseline;
    await assert.rejects(
      proxied.nv.read(floor.baselinesIndex, FLOOR_BASELINES_SIZE),
      rejectsWith('EG_TAMPERED', integrity),
    );
    assert.equal(proxy!.forged, before + 3, 'each read was forged, and each was refused');
    proxy!.forge = undefined;
  });

  test('armed, the floor refuses to read or raise, and never reads lower', async () => {
    // Either edit alone: the counter's read or B's read is refused, whichever was changed.
    for (const forge of [lowerCounter, raiseModelBaseline]) {
      proxy!.forge = forge;
      const before = proxy!.forged;
      await assert.rejects(proxiedFloor.read('model'), rejectsWith('EG_TAMPERED'));
      await assert.rejects(proxiedFloor.raise('model', 4), rejectsWith('EG_TAMPERED'));
      await assert.rejects(proxiedFloor.state(), rejectsWith('EG_TAMPERED'));
      assert.equal(proxy!.forged, before + 3);
    }
    proxy!.forge = undefined;
    assert.equal(await floor.read('model'), 3, 'nothing was raised or lowered');
    assert.equal(await proxiedFloor.read('model'), 3);
  });

  test(
    'an increment the TPM never did (answered by the interposer) stops the raise with EG_FLOOR_TAMPERED',
    { timeout: 60_000 },
    async () => {
      proxy!.swallowIncrements = true;
      try {
        await assert.rejects(
          proxiedFloor.raise('model', 4),
          rejectsWith('EG_FLOOR_TAMPERED', /did not grow when incremented/),
        );
        assert.equal(proxy!.swallowed, 1, 'one answered increment, then the raise stops');
      } finally {
        proxy!.swallowIncrements = false;
      }
      assert.equal(await floor.read('model'), 3);
    },
  );

  test("a read bound to a Name other than the TPM's index fails closed", async () => {
    const b = floor.baselinesIndex;
    const name = nvName((await store.client.nv.readPublic(b))!);
    assert.equal((await store.client.nv.read(b, FLOOR_BASELINES_SIZE, name)).length, FLOOR_BASELINES_SIZE);
    const counterName = nvName((await store.client.nv.readPublic(counter))!);
    const value = await store.client.nv.counterRead(counter, 'index', counterName);
    assert.equal(await store.client.nv.counterRead(counter, 'owner', counterName), value, 'the owner as authHandle');
    const other = Buffer.from(name);
    other.writeUInt8(other.readUInt8(other.length - 1) ^ 1, other.length - 1);
    await assert.rejects(
      store.client.nv.read(b, FLOOR_BASELINES_SIZE, other),
      rejectsWith('EG_TAMPERED', /another Name/),
    );
    await assert.rejects(
      store.client.nv.counterRead(counter, 'index', other),
      rejectsWith('EG_TAMPERED', /another Name/),
    );
  });

  test('through the session, an undefined counter is undefined and one never incremented reads 0', async () => {
    const fresh = BASE + 0x10;
    assert.equal(await store.client.nv.counterRead(fresh, 'index'), undefined);
    await store.client.nv.counterDefine(fresh);
    assert.equal(await store.client.nv.counterRead(fresh, 'index'), 0n);
    assert.equal(await store.client.nv.counterRead(fresh, 'owner'), 0n);
    assert.ok((await store.client.nv.counterIncrement(fresh, 'index')) > 0n);
    await store.client.nv.undefine(fresh);
  });
});
