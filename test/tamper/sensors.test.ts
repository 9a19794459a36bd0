/**
 * Each sensor kind against what it reads for real: a sysfs-shaped directory (hwmon intrusion
 * alarm, IIO accelerometer, legacy sysfs GPIO), real child processes for the command probe, and
 * the real libgpiod tools for the GPIO character-device readers' output parsing and error paths.
 * There is no GPIO chip or gpio-sim module on these machines: a line read through gpioget or
 * gpiomon is NOT exercised here.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { isEdgeguardError } from '../../src/errors/index.ts';
import {
  AccelerometerSensor,
  CommandSensor,
  GpioSensor,
  GpiogetReader,
  GpiomonReader,
  IntrusionSensor,
  angleBetween,
  classifyAcceleration,
  parseGpiogetOutput,
  parseGpiomonLine,
  tamperSensorSchema,
  type GpioSensorConfig,
  type Vector3,
} from '../../src/tamper/index.ts';
import { findBinary } from '../../src/tpm/swtpm.ts';
import { makeSysfs, ONE_G_RAW, type FakeSysfs } from '../helpers/sysfs.ts';

const refused = (e: unknown) => isEdgeguardError(e, 'EG_TAMPER_SENSOR');
const GPIOD_SKIP =
  findBinary('gpioget') || process.env.CI === 'true' ? false : 'gpiod tools not installed (apt-get install gpiod)';

function sensorConfig<T>(value: unknown): T {
  return tamperSensorSchema.parse(value) as T;
}

describe('tamper sensors', () => {
  let sysfs: FakeSysfs;
  before(async () => {
    sysfs = await makeSysfs();
  });
  after(() => sysfs.remove());

  test('intrusion: 0 is quiet, 1 is tampered, garbage and a missing file cannot be read', async () => {
    const s = new IntrusionSensor(sensorConfig({ kind: 'intrusion', name: 'chassis', hwmon: 'hwmon0' }), sysfs.root);
    await sysfs.intrusion(0);
    assert.deepEqual(await s.read(), { tampered: false, detail: 'intrusion0_alarm = 0' });
    await sysfs.intrusion(1);
    assert.deepEqual(await s.read(), { tampered: true, detail: 'intrusion0_alarm = 1' });
    await sysfs.write('class/hwmon/hwmon0/intrusion0_alarm', 'open\n');
    await assert.rejects(s.read(), refused);
    const other = new IntrusionSensor(
      sensorConfig({ kind: 'intrusion', name: 'x', hwmon: 'hwmon9', index: 1 }),
      sysfs.root,
    );
    await assert.rejects(other.read(), (e: unknown) => refused(e) && /hwmon9\/intrusion1_alarm/.test(String(e)));
  });

  test('accelerometer: rest, shock and tilt against the first reading; bad scale and axes refused', async () => {
    const s = new AccelerometerSensor(
      sensorConfig({ kind: 'accelerometer', name: 'imu', device: 'iio:device0', shockMs2: 5, tiltDegrees: 20 }),
      sysfs.root,
    );
    await sysfs.accel([0, 0, ONE_G_RAW]);
    assert.equal((await s.read()).tampered, false);
    await sysfs.accel([10, -12, ONE_G_RAW + 20]);
    assert.equal((await s.read()).tampered, false, 'sensor noise is not a finding');
    await sysfs.accel([0, 0, 3 * ONE_G_RAW]);
    assert.match((await s.read()).detail, /^shock 19\.\d+ m\/s\^2 > 5/);
    await sysfs.accel([
      Math.round(ONE_G_RAW * Math.sin(Math.PI / 6)),
      0,
      Math.round(ONE_G_RAW * Math.cos(Math.PI / 6)),
    ]);
    const tilt = await s.read();
    assert.equal(tilt.tampered, true);
    assert.match(tilt.detail, /^tilt 30\.0 deg > 20 deg$/);
    for (const scale of ['0\n', '-0.0095\n', 'fast\n', ''])
      await sysfs.accel([0, 0, ONE_G_RAW], scale).then(() => assert.rejects(s.read(), refused));
    await sysfs.accel([0, 0, ONE_G_RAW]);
    await sysfs.write('bus/iio/devices/iio:device0/in_accel_y_raw', '12345678901234567890\n');
    await assert.rejects(s.read(), refused);
  });

  test('accelerometer: a first reading with no gravity cannot be a reference', async () => {
    await sysfs.accel([0, 0, 0]);
    const s = new AccelerometerSensor(
      sensorConfig({ kind: 'accelerometer', name: 'imu', device: 'iio:device0' }),
      sysfs.root,
    );
    await assert.rejects(s.read(), (e: unknown) => refused(e) && /set a reference/.test(String(e)));
  });

  test('property: classifyAcceleration finds a tilt exactly when the angle exceeds the limit', () => {
    const g = fc.double({ min: -50, max: 50, noNaN: true });
    fc.assert(
      fc.property(fc.tuple(g, g, g), fc.tuple(g, g, g), fc.double({ min: 1, max: 179, noNaN: true }), (a, b, limit) => {
        const r = classifyAcceleration(a as Vector3, b as Vector3, { shockMs2: 1e9, tiltDegrees: limit });
        assert.equal(r.tampered, angleBetween(a as Vector3, b as Vector3) > limit);
        const angle = angleBetween(a as Vector3, b as Vector3);
        assert.ok(angle >= 0 && angle <= 180);
      }),
    );
  });

  test('command: exit 0 quiet, non-zero tampered with its complaint, unrunnable and hanging are unreadable', async () => {
    const cmd = (argv: string[], timeoutMs = 5000) =>
      new CommandSensor(sensorConfig({ kind: 'command', name: 'probe', argv, timeoutMs }));
    assert.deepEqual(await cmd(['true']).read(), { tampered: false, detail: 'exit 0' });
    assert.deepEqual(await cmd(['sh', '-c', 'echo lid open >&2; exit 3']).read(), {
      tampered: true,
      detail: 'exit 3: lid open',
    });
    await assert.rejects(cmd(['/nonexistent/probe']).read(), (e: unknown) => refused(e) && /ENOENT/.test(String(e)));
    await assert.rejects(cmd(['sleep', '30'], 50).read(), (e: unknown) => refused(e) && /within 50 ms/.test(String(e)));
  });

  test('gpio: gpioget and gpiomon output parsers accept their forms only', () => {
    assert.equal(parseGpiogetOutput('1\n'), 1);
    assert.equal(parseGpiogetOutput('0\n'), 0);
    for (const text of ['', '\n', '2\n', '1 0\n', '"17"=active\n', 'error', '01\n'])
      assert.throws(() => parseGpiogetOutput(text), refused, JSON.stringify(text));
    assert.deepEqual(parseGpiomonLine('17 1'), { offset: 17, value: 1 });
    assert.deepEqual(parseGpiomonLine('3 0'), { offset: 3, value: 0 });
    for (const text of ['', '17', '17 2', '-1 1', '99999 1', 'event: RISING EDGE offset: 17', '17 1 x', ' 17 1'])
      assert.throws(() => parseGpiomonLine(text), refused, JSON.stringify(text));
    fc.assert(
      fc.property(fc.string({ maxLength: 20 }), (text) => {
        try {
          const edge = parseGpiomonLine(text);
          assert.equal(text, `${edge.offset} ${edge.value}`);
        } catch (e) {
          assert.ok(refused(e));
        }
      }),
    );
  });

  test('gpio: the legacy sysfs value file', async () => {
    const s = new GpioSensor(
      sensorConfig({ kind: 'gpio', name: 'case', chip: 'gpiochip0', line: 17, mode: 'sysfs', tamperedValue: 1 }),
      sysfs.root,
    );
    await sysfs.gpio(17, 0);
    assert.equal((await s.read()).tampered, false);
    await sysfs.gpio(17, 1);
    assert.deepEqual(await s.read(), { tampered: true, detail: 'gpiochip0 line 17 = 1' });
  });

  test(
    'gpio: the real gpioget and gpiomon on a chip that does not exist cannot read',
    { skip: GPIOD_SKIP },
    async () => {
      const config = sensorConfig<GpioSensorConfig>({
        kind: 'gpio',
        name: 'case',
        chip: 'gpiochip99',
        line: 3,
      });
      await assert.rejects(
        new GpiogetReader(config).read(),
        (e: unknown) => refused(e) && /gpioget gpiochip99 3 failed \(gpioget: /.test(String(e)),
      );
      const mon = new GpiomonReader(config);
      await assert.rejects(
        mon.start(() => undefined),
        refused,
      );
      await assert.rejects(mon.read(), (e: unknown) => refused(e) && /was not started/.test(String(e)));
      await mon.close();
    },
  );
});
