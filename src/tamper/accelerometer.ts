/**
 * An IIO accelerometer read through sysfs (Linux Documentation/ABI/testing/sysfs-bus-iio):
 * in_accel_{x,y,z}_raw times in_accel_scale is the acceleration in m/s^2. Two findings, both
 * against a reference taken at rest: a shock (the magnitude differs from the reference's by more
 * than a threshold: a blow or a drop) and a tilt (the direction turned by more than an angle: the
 * box was lifted or opened on its hinge).
 */
import { join } from 'node:path';
import { EdgeguardError } from '../errors/index.ts';
import type { AccelerometerSensorConfig } from './config.ts';
import type { SensorReading, TamperSensor } from './sensor.ts';
import { parseSysfsDecimal, parseSysfsInteger, readSysfsAttribute } from './sysfs-value.ts';

export type Vector3 = readonly [number, number, number];

/** A reference below this is not an object at rest in gravity (9.81 m/s^2): no direction to compare with. */
const MIN_REFERENCE_MS2 = 1;

function magnitude(v: Vector3): number {
  return Math.hypot(v[0], v[1], v[2]);
}

/** The angle between two vectors in degrees; 0 when either has no length. */
export function angleBetween(a: Vector3, b: Vector3): number {
  const ma = magnitude(a);
  const mb = magnitude(b);
  if (!(ma > 0 && mb > 0)) return 0;
  // Normalize first: the product of two tiny magnitudes underflows to 0 (0/0, a NaN angle).
  const cos = (a[0] / ma) * (b[0] / mb) + (a[1] / ma) * (b[1] / mb) + (a[2] / ma) * (b[2] / mb);
  return (Math.acos(Math.min(1, Math.max(-1, cos))) * 180) / Math.PI;
}

export interface AccelerationLimits {
  shockMs2: number;
  tiltDegrees: number;
}

/** Pure: is this acceleration a shock or a tilt relative to the reference? */
export function classifyAcceleration(now: Vector3, reference: Vector3, limits: AccelerationLimits): SensorReading {
  const shock = Math.abs(magnitude(now) - magnitude(reference));
  const tilt = angleBetween(now, reference);
  if (shock > limits.shockMs2)
    return { tampered: true, detail: `shock ${shock.toFixed(2)} m/s^2 > ${limits.shockMs2} m/s^2` };
  if (tilt > limits.tiltDegrees)
    return { tampered: true, detail: `tilt ${tilt.toFixed(1)} deg > ${limits.tiltDegrees} deg` };
  return { tampered: false, detail: `shock ${shock.toFixed(2)} m/s^2, tilt ${tilt.toFixed(1)} deg` };
}

export class AccelerometerSensor implements TamperSensor {
  readonly kind = 'accelerometer' as const;
  readonly name: string;
  readonly debounce: AccelerometerSensorConfig['debounce'];
  private readonly dir: string;
  private reference: Vector3 | undefined;

  constructor(
    private readonly config: AccelerometerSensorConfig,
    sysfsRoot: string,
  ) {
    this.name = config.name;
    this.debounce = config.debounce;
    this.dir = join(sysfsRoot, 'bus', 'iio', 'devices', config.device);
    this.reference = config.reference;
  }

  private async attribute(file: string): Promise<string> {
    return readSysfsAttribute(join(this.dir, file), `accelerometer ${this.name} ${file}`);
  }

  /** The acceleration now, m/s^2. */
  async acceleration(): Promise<Vector3> {
    const scale = parseSysfsDecimal(await this.attribute('in_accel_scale'), `accelerometer ${this.name} scale`);
    if (!(scale > 0))
      throw new EdgeguardError('EG_TAMPER_SENSOR', `accelerometer ${this.name} reports a scale of ${scale}, not > 0.`);
    const raw = await Promise.all(
      (['x', 'y', 'z'] as const).map(async (axis) =>
        parseSysfsInteger(await this.attribute(`in_accel_${axis}_raw`), `accelerometer ${this.name} ${axis} axis`),
      ),
    );
    return [raw[0]! * scale, raw[1]! * scale, raw[2]! * scale];
  }

  async read(): Promise<SensorReading> {
    const now = await this.acceleration();
    if (this.reference === undefined) {
      // The first reading (the self-test at start) is the resting position to compare with.
      if (magnitude(now) < MIN_REFERENCE_MS2)
        throw new EdgeguardError(
          'EG_TAMPER_SENSOR',
          `accelerometer ${this.name} reads ${magnitude(now).toFixed(2)} m/s^2 at rest, not gravity; set a reference in the tamper config.`,
        );
      this.reference = now;
    }
    return classifyAcceleration(now, this.reference, this.config);
  }
}
