/**
 * Each sensor kind fires the full response on a sysfs-shaped directory: a TamperGuard with one
 * sensor self-tests quiet, the test makes the sensor's edge (writes the sysfs file, or makes the
 * probe fail), and the guard runs every step in order with the real PCR extend on swtpm. The
 * device is then locked: PCR 16 moved, the lock state is on disk, and a restarted guard refuses.
 * GPIO goes through the legacy sysfs value file; gpiod's character-device path needs a chip.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AuditEvent } from '../../src/audit/index.ts';
import { isEdgeguardError } from '../../src/errors/index.ts';
import {
  TAMPER_RESPONSE_STEPS,
  TamperGuard,
  isLocked,
  parseTamperConfig,
  type TamperResponseReport,
} from '../../src/tamper/index.ts';
import { TpmClient } from '../../src/tpm/index.ts';
import { TPM_SKIP, startTestTpm, stopTestTpm, type Swtpm } from '../helpers/swtpm.ts';
import { makeSysfs, ONE_G_RAW, type FakeSysfs } from '../helpers/sysfs.ts';

interface Case {
  kind: string;
  sensor: (sysfs: FakeSysfs) => Record<string, unknown>;
  quiet: (sysfs: FakeSysfs) => Promise<void>;
  edge: (sysfs: FakeSysfs) => Promise<void>;
  detail: RegExp;
}

const CASES: Case[] = [
  {
    kind: 'intrusion',
    sensor: () => ({ kind: 'intrusion', name: 'chassis', hwmon: 'hwmon0' }),
    quiet: (s) => s.intrusion(0),
    edge: (s) => s.intrusion(1),
    detail: /intrusion0_alarm = 1/,
  },
  {
    kind: 'accelerometer',
    sensor: () => ({ kind: 'accelerometer', name: 'imu', device: 'iio:device0', tiltDegrees: 20 }),
    quiet: (s) => s.accel([0, 0, ONE_G_RAW]),
    edge: (s) => s.accel([ONE_G_RAW, 0, 0]),
    detail: /^tilt [0-9.]+ deg > 20 deg$/,
  },
  {
    kind: 'gpio',
    sensor: () => ({ kind: 'gpio', name: 'case-switch', chip: 'gpiochip0', line: 17, mode: 'sysfs' }),
    quiet: (s) => s.gpio(17, 0),
    edge: (s) => s.gpio(17, 1),
    detail: /gpiochip0 line 17 = 1/,
  },
  {
    kind: 'command',
    sensor: (s) => ({ kind: 'command', name: 'lid', argv: ['sh', '-c', `test ! -e '${s.root}/lid-open'`] }),
    quiet: async () => undefined,
    edge: (s) => writeFile(join(s.root, 'lid-open'), ''),
    detail: /exit 1/,
  },
];

describe('each sensor kind fires the full response (swtpm)', { skip: TPM_SKIP }, () => {
  let tpm: Swtpm | undefined;
  let client: TpmClient;
  let base: string;

  before(async () => {
    tpm = await startTestTpm();
    client = new TpmClient({ tcti: tpm.tcti });
    base = await mkdtemp(join(tmpdir(), 'eg-tamper-full-'));
  });
  after(async () => {
    await stopTestTpm(tpm);
    if (base) await rm(base, { recursive: true, force: true });
  });

  for (const c of CASES) {
    test(`${c.kind}: edge -> stop, wipe, lock state, PCR 16, journal, notify; restart stays locked`, async () => {
      const sysfs = await makeSysfs();
      const stateDir = await mkdtemp(join(base, `${c.kind}-`));
      try {
        await c.quiet(sysfs);
        const calls: string[] = [];
        const journaled: AuditEvent[] = [];
        let done!: (r: TamperResponseReport) => void;
        const locked = new Promise<TamperResponseReport>((r) => (done = r));
        const options = {
          actions: {
            stopServing: () => void calls.push('stopServing'),
            wipeSecrets: () => void calls.push('wipeSecrets'),
            journal: (events: AuditEvent[]) => {
              calls.push('journal');
              journaled.push(...events);
            },
            notifyControlPlane: () => void calls.push('notify'),
          },
          tpm: client,
          stateDir,
          deviceId: 'dev-1',
          bindingKey: 'K'.repeat(43),
          onLocked: done,
        };
        const config = parseTamperConfig({ sysfsRoot: sysfs.root, pollIntervalMs: 20, sensors: [c.sensor(sysfs)] });
        const guard = new TamperGuard(config, options);
        const pcrBefore = (await client.readPcrs('sha256:16')).sha256![16]!;
        await guard.start();
        assert.equal(guard.response, undefined, 'the self-test is quiet');
        await c.edge(sysfs);
        const report = await locked;
        await guard.stop();

        assert.equal(report.ok, true, JSON.stringify(report.steps));
        assert.deepEqual(
          report.steps.map((s) => s.step),
          [...TAMPER_RESPONSE_STEPS],
        );
        assert.deepEqual(calls, ['stopServing', 'wipeSecrets', 'journal', 'notify']);
        assert.equal(report.finding.kind, c.kind);
        assert.match(report.finding.detail, c.detail);
        assert.deepEqual(
          journaled.map((e) => e.type),
          ['tamper.detected', 'device.locked'],
        );
        assert.notDeepEqual((await client.readPcrs('sha256:16')).sha256![16], pcrBefore);
        assert.equal(await isLocked(stateDir), true);
        const restarted = new TamperGuard(config, options);
        await assert.rejects(restarted.start(), (e: unknown) => isEdgeguardError(e, 'EG_LOCKED'));
      } finally {
        await sysfs.remove();
      }
    });
  }
});
