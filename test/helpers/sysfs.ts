/**
 * A directory laid out like the parts of sysfs the tamper sensors read, for tests and the bench:
 *
 *   ROOT/class/hwmon/hwmon0/intrusion0_alarm
 *   ROOT/bus/iio/devices/iio:device0/in_accel_{x,y,z}_raw, in_accel_scale
 *   ROOT/class/gpio/gpio17/value
 *
 * Values are written the way the kernel prints them (decimal, newline-terminated), each through a
 * temporary file and a rename so a sensor never reads half a value.
 */
import { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

/** A typical MEMS accelerometer scale (m/s^2 per LSB): 9.80665 / 1024. */
export const ACCEL_SCALE = '0.009576806';
/** Raw counts of 1 g along z at that scale. */
export const ONE_G_RAW = 1024;

export interface FakeSysfs {
  root: string;
  write(relativePath: string, value: string): Promise<void>;
  intrusion(alarm: 0 | 1): Promise<void>;
  accel(raw: [number, number, number], scale?: string): Promise<void>;
  gpio(line: number, value: 0 | 1): Promise<void>;
  remove(): Promise<void>;
}

export async function makeSysfs(): Promise<FakeSysfs> {
  const root = await mkdtemp(join(tmpdir(), 'eg-sysfs-'));
  let n = 0;
  const write = async (relativePath: string, value: string) => {
    const path = join(root, relativePath);
    await mkdir(dirname(path), { recursive: true });
    const tmp = `${path}.${n++}.tmp`;
    await writeFile(tmp, value);
    await rename(tmp, path);
  };
  const iio = 'bus/iio/devices/iio:device0';
  return {
    root,
    write,
    intrusion: (alarm) => write('class/hwmon/hwmon0/intrusion0_alarm', `${alarm}\n`),
    accel: async ([x, y, z], scale = ACCEL_SCALE) => {
      await write(`${iio}/in_accel_scale`, `${scale}\n`);
      await write(`${iio}/in_accel_x_raw`, `${x}\n`);
      await write(`${iio}/in_accel_y_raw`, `${y}\n`);
      await write(`${iio}/in_accel_z_raw`, `${z}\n`);
    },
    gpio: (line, value) => write(`class/gpio/gpio${line}/value`, `${value}\n`),
    remove: () => rm(root, { recursive: true, force: true }),
  };
}
