/**
 * The monitor: debouncing (a pure step, with a property), the self-test at start, failMode, and
 * one finding reported once, on a sysfs-shaped directory. Waits are on the monitor's own
 * callbacks, never on a clock.
 */
import { afterEach, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import {
  TamperMonitor,
  debounceStep,
  parseTamperConfig,
  type DebounceState,
  type TamperFinding,
} from '../../src/tamper/index.ts';
import { isEdgeguardError } from '../../src/errors/index.ts';
import { makeSysfs, type FakeSysfs } from '../helpers/sysfs.ts';

function deferred<T>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

describe('debounce', () => {
  const rule = { readings: 3, holdMs: 100 };
  test('N consecutive bad readings spanning the hold time confirm; a good one resets', () => {
    let s: DebounceState = { streak: 0, since: undefined };
    const feed = (bad: boolean, t: number) => {
      const r = debounceStep(s, bad, t, rule);
      s = r.state;
      return r.confirmed;
    };
    assert.equal(feed(true, 0), false);
    assert.equal(feed(true, 50), false);
    assert.equal(feed(true, 60), false, 'three readings but only 60 ms');
    assert.equal(feed(false, 70), false);
    assert.equal(feed(true, 200), false);
    assert.equal(feed(true, 250), false);
    assert.equal(feed(true, 300), true);
  });

  test('property: confirmed exactly when the trailing bad run has N readings over the hold time', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 50 })), { maxLength: 60 }),
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 0, max: 200 }),
        (readings, n, hold) => {
          let s: DebounceState = { streak: 0, since: undefined };
          let t = 0;
          const times: number[] = [];
          const bads: boolean[] = [];
          for (const [bad, dt] of readings) {
            t += dt;
            times.push(t);
            bads.push(bad);
            const r = debounceStep(s, bad, t, { readings: n, holdMs: hold });
            s = r.state;
            let run = 0;
            while (run < bads.length && bads[bads.length - 1 - run]) run++;
            const expected = run >= n && t - times[times.length - run]! >= hold;
            assert.equal(r.confirmed, expected);
          }
        },
      ),
    );
  });
});

describe('tamper monitor on a sysfs-shaped directory', () => {
  let sysfs: FakeSysfs;
  const monitors: TamperMonitor[] = [];
  beforeEach(async () => {
    sysfs = await makeSysfs();
    await sysfs.intrusion(0);
  });
  afterEach(async () => {
    await Promise.all(monitors.splice(0).map((m) => m.stop()));
    await sysfs.remove();
  });

  const config = (extra: Record<string, unknown> = {}) =>
    parseTamperConfig({
      sysfsRoot: sysfs.root,
      pollIntervalMs: 10,
      sensors: [{ kind: 'intrusion', name: 'chassis', hwmon: 'hwmon0', debounce: { readings: 2 } }],
      ...extra,
    });

  test('a case opening after start is reported once, after the debounce', async () => {
    const found = deferred<TamperFinding>();
    let calls = 0;
    const m = new TamperMonitor(config(), {
      onTamper: (f) => {
        calls++;
        found.resolve(f);
      },
    });
    monitors.push(m);
    const selfTest = await m.start();
    assert.deepEqual(selfTest.get('chassis'), {
      ok: true,
      reading: { tampered: false, detail: 'intrusion0_alarm = 0' },
    });
    await sysfs.intrusion(1);
    const f = await found.promise;
    assert.equal(f.sensor, 'chassis');
    assert.equal(f.kind, 'intrusion');
    assert.equal(f.cause, 'tampered');
    assert.equal(f.detail, 'intrusion0_alarm = 1');
    await m.stop();
    assert.equal(calls, 1);
  });

  test('failMode lock: a sensor that cannot be read at the self-test is a finding at once', async () => {
    const findings: TamperFinding[] = [];
    const m = new TamperMonitor(config({ sensors: [{ kind: 'intrusion', name: 'gone', hwmon: 'hwmon7' }] }), {
      onTamper: (f) => findings.push(f),
    });
    monitors.push(m);
    await m.start();
    assert.equal(findings.length, 1);
    assert.equal(findings[0]!.cause, 'unreadable');
    assert.match(findings[0]!.detail, /^self-test: intrusion sensor gone .*ENOENT/);
    await m.stop();
  });

  test('failMode lock: a sensor that stops being readable after start locks, debounced', async () => {
    const found = deferred<TamperFinding>();
    const m = new TamperMonitor(config(), { onTamper: found.resolve });
    monitors.push(m);
    await m.start();
    await rm(join(sysfs.root, 'class/hwmon/hwmon0'), { recursive: true });
    const f = await found.promise;
    assert.equal(f.cause, 'unreadable');
    assert.match(f.detail, /^intrusion sensor chassis .*ENOENT/);
    await m.stop();
  });

  test('failMode alert: an unreadable sensor alerts, the others still lock', async () => {
    const alerts: TamperFinding[] = [];
    const found = deferred<TamperFinding>();
    const m = new TamperMonitor(
      config({
        failMode: 'alert',
        sensors: [
          { kind: 'intrusion', name: 'gone', hwmon: 'hwmon7' },
          { kind: 'intrusion', name: 'chassis', hwmon: 'hwmon0', debounce: { readings: 1 } },
        ],
      }),
      { onTamper: found.resolve, onAlert: (f) => alerts.push(f) },
    );
    monitors.push(m);
    await m.start();
    assert.equal(alerts.length, 1);
    assert.equal(alerts[0]!.sensor, 'gone');
    await sysfs.intrusion(1);
    assert.equal((await found.promise).sensor, 'chassis');
    await m.stop();
    assert.equal(alerts.length, 1, 'an alert is raised once per sensor, not once per poll');
  });

  test('config: unknown keys, duplicate names and paths outside the root are refused', () => {
    const bad = [
      { sensors: [{ kind: 'intrusion', name: 'a', hwmon: '../../etc' }] },
      { sensors: [{ kind: 'intrusion', name: 'a', hwmon: 'hwmon0', extra: 1 }] },
      {
        sensors: [
          { kind: 'intrusion', name: 'a', hwmon: 'hwmon0' },
          { kind: 'command', name: 'a', argv: ['true'] },
        ],
      },
      { pcr: { index: 24 } },
      { failMode: 'ignore' },
      { sensors: [{ kind: 'accelerometer', name: 'a', device: 'iio:device0', tiltDegrees: 0 }] },
    ];
    for (const value of bad)
      assert.throws(
        () => parseTamperConfig(value),
        (e: unknown) => isEdgeguardError(e, 'EG_CONFIG'),
        JSON.stringify(value),
      );
    const d = parseTamperConfig({});
    assert.deepEqual(
      { pcr: d.pcr, failMode: d.failMode, pollIntervalMs: d.pollIntervalMs, sysfsRoot: d.sysfsRoot },
      { pcr: { index: 16, bank: 'sha256' }, failMode: 'lock', pollIntervalMs: 200, sysfsRoot: '/sys' },
    );
  });
});
