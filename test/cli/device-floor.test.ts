/**
 * `edgeguard device init --tpm` provisions the anti-rollback floor; `device status` shows it per
 * kind; `device floor init` provisions a device made before floor baselines (keeping the floors
 * its counters hold) and refuses a provisioned one unless --force (an operator reset). Real CLI, swtpm.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../helpers/cli.ts';
import { nvHex, tpm2 } from '../helpers/floor.ts';
import { startTestTpm, stopTestTpm, TPM_SKIP, type Swtpm } from '../helpers/swtpm.ts';

interface FloorJson {
  provisioned: boolean;
  code?: string;
  kinds?: Record<string, { floor: number; counter: string; baseline: string }>;
}

describe('edgeguard device floor (swtpm)', { skip: TPM_SKIP }, () => {
  let tpm: Swtpm | undefined;
  let tmp: string;
  before(async () => {
    tpm = await startTestTpm();
    tmp = await mkdtemp(join(tmpdir(), 'eg-cli-floor-'));
  });
  after(async () => {
    await stopTestTpm(tpm);
    await rm(tmp, { recursive: true, force: true });
  });

  test('device init provisions the floor; status shows floor, counter and baseline per kind', async () => {
    const dir = join(tmp, 'device');
    const init = await runCli(['--json', 'device', 'init', '--dir', dir, '--tpm', tpm!.tcti]);
    assert.equal(init.code, 0, init.stderr);
    const made = JSON.parse(init.stdout) as { floor: FloorJson };
    assert.equal(made.floor.provisioned, true);
    assert.deepEqual(
      Object.values(made.floor.kinds!).map((k) => k.floor),
      [0, 0, 0],
    );
    const st = await runCli(['--json', 'device', 'status', '--dir', dir]);
    assert.equal(st.code, 0, st.stderr);
    const floor = (JSON.parse(st.stdout) as { floor: FloorJson }).floor;
    assert.equal(floor.provisioned, true);
    for (const k of Object.values(floor.kinds!)) assert.equal(BigInt(k.counter) - BigInt(k.baseline), 0n);
    const again = await runCli(['device', 'floor', 'init', '--dir', dir]);
    assert.equal(again.code, 2, 'EG_EXISTS');
    assert.match(again.stderr, /EG_EXISTS: .*--force/);
  });

  test('a device made before baselines: status says updates are refused, floor init keeps the old floors', async () => {
    const dir = join(tmp, 'legacy');
    const base = 0x01800200;
    const init = await runCli([
      '--json',
      'device',
      'init',
      '--dir',
      dir,
      '--tpm',
      tpm!.tcti,
      '--nv-index',
      nvHex(base + 0x40),
    ]);
    assert.equal(init.code, 0, init.stderr);
    // The old layout at `base`: an owner-authorized model counter raised twice, no baselines.
    tpm2(tpm!.tcti, 'tpm2_nvdefine', [
      nvHex(base),
      '-C',
      'o',
      '-s',
      '8',
      '-a',
      'nt=counter|ownerread|ownerwrite|no_da',
    ]);
    tpm2(tpm!.tcti, 'tpm2_nvincrement', [nvHex(base), '-C', 'o']);
    tpm2(tpm!.tcti, 'tpm2_nvincrement', [nvHex(base), '-C', 'o']);
    const raw = tpm2(tpm!.tcti, 'tpm2_nvread', [nvHex(base), '-C', 'o', '-s', '8']).readBigUInt64BE(0);
    const st = await runCli(['--json', 'device', 'status', '--dir', dir, '--nv-index', nvHex(base)]);
    assert.equal((JSON.parse(st.stdout) as { floor: FloorJson }).floor.code, 'EG_FLOOR_UNPROVISIONED');
    const human = await runCli(['device', 'status', '--dir', dir, '--nv-index', nvHex(base)]);
    assert.match(human.stdout, /NOT usable.*edgeguard device floor init/);

    const r = await runCli(['--json', 'device', 'floor', 'init', '--dir', dir, '--nv-index', nvHex(base)]);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { kept: string[]; reset: boolean; floor: FloorJson };
    assert.deepEqual(out.kept, ['model']);
    assert.equal(out.reset, false);
    assert.equal(out.floor.kinds!.model!.floor, Number(raw));
    assert.equal(out.floor.kinds!.agent!.floor, 0);

    const forced = await runCli(['device', 'floor', 'init', '--dir', dir, '--nv-index', nvHex(base), '--force']);
    assert.equal(forced.code, 0, forced.stderr);
    assert.match(forced.stderr, /operator reset/);
    assert.match(forced.stdout, /model\s+floor 0/);
  });

  test('software devices have no TPM floor to provision', async () => {
    const dir = join(tmp, 'soft');
    assert.equal((await runCli(['device', 'init', '--dir', dir, '--software'])).code, 0);
    const r = await runCli(['device', 'floor', 'init', '--dir', dir]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /EG_USAGE: .*anti-rollback\.json/);
  });
});
