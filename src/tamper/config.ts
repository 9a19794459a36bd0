/**
 * The `tamper:` section of agent.yaml, validated with zod; unknown keys are refused so a typo in a
 * security setting is an error, not a sensor silently left out. Byte-level description and an
 * example: docs/formats.md ("Tamper configuration").
 *
 *   tamper:
 *     sysfsRoot: /sys
 *     pollIntervalMs: 200
 *     failMode: lock                  # a sensor that cannot be read locks (or only alerts)
 *     pcr: { index: 16, bank: sha256 }
 *     stepTimeoutMs: 2000
 *     sensors:
 *       - { kind: gpio, name: case-switch, chip: gpiochip0, line: 17, tamperedValue: 1 }
 *       - { kind: accelerometer, name: imu, device: 'iio:device0', shockMs2: 25, tiltDegrees: 20 }
 *       - { kind: intrusion, name: chassis, hwmon: hwmon1 }
 *       - { kind: command, name: lid, argv: [/usr/local/bin/lid-closed] }
 */
import { z } from 'zod';
import { EdgeguardError } from '../errors/index.ts';

/** A sysfs directory entry name: no separators, no `..`, so a config cannot point outside the root. */
const entryName = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9_.:-]+$/)
  .refine((s) => s !== '.' && s !== '..', 'must name an entry, not . or ..');

const debounceSchema = z
  .object({
    /** Consecutive tampered readings needed before the response fires. */
    readings: z.number().int().min(1).max(100).default(2),
    /** And the tampered state must have lasted at least this long, ms (0: the readings alone decide). */
    holdMs: z.number().int().min(0).max(60_000).default(0),
  })
  .strict()
  .prefault({});

const common = {
  /** Names the sensor in the journal and the lock state. */
  name: z
    .string()
    .min(1)
    .max(64)
    .regex(/^[A-Za-z0-9_.-]+$/),
  debounce: debounceSchema,
};

const gpioSensorSchema = z
  .object({
    kind: z.literal('gpio'),
    ...common,
    /** A gpiod chip name or number (`gpiochip0`, `0`). */
    chip: entryName,
    line: z.number().int().min(0).max(65_535),
    /** The line value that means "case open" (as gpioget reports it, after activeLow). */
    tamperedValue: z.union([z.literal(0), z.literal(1)]).default(1),
    activeLow: z.boolean().default(false),
    /**
     * gpiomon holds the line and reports edges as they happen; gpioget polls; sysfs reads the
     * legacy SYSFS/class/gpio/gpioLINE/value, where `line` is the global GPIO number.
     */
    mode: z.enum(['gpiomon', 'gpioget', 'sysfs']).default('gpiomon'),
  })
  .strict();

const accelerometerSensorSchema = z
  .object({
    kind: z.literal('accelerometer'),
    ...common,
    /** The IIO device under SYSFS/bus/iio/devices (`iio:device0`). */
    device: entryName,
    /** A shock: the magnitude of the acceleration differs from the reference's by more than this, m/s^2. */
    shockMs2: z.number().positive().max(10_000).default(25),
    /** A tilt: the angle between the acceleration and the reference exceeds this, degrees. */
    tiltDegrees: z.number().positive().max(180).default(20),
    /** The resting acceleration (m/s^2, x y z); default: the first reading at start. */
    reference: z.tuple([z.number(), z.number(), z.number()]).optional(),
  })
  .strict();

const intrusionSensorSchema = z
  .object({
    kind: z.literal('intrusion'),
    ...common,
    /** The hwmon device under SYSFS/class/hwmon (`hwmon1`). */
    hwmon: entryName,
    /** The alarm attribute index (intrusionN_alarm). */
    index: z.number().int().min(0).max(15).default(0),
  })
  .strict();

const commandSensorSchema = z
  .object({
    kind: z.literal('command'),
    ...common,
    /** Run without a shell; exit 0 means "not tampered", any other exit means tampered. */
    argv: z.array(z.string().min(1).max(4096)).min(1).max(64),
    /** A probe that does not finish in time cannot be read (failMode applies). */
    timeoutMs: z.number().int().min(10).max(60_000).default(2_000),
  })
  .strict();

export const tamperSensorSchema = z.discriminatedUnion('kind', [
  gpioSensorSchema,
  accelerometerSensorSchema,
  intrusionSensorSchema,
  commandSensorSchema,
]);

export const tamperConfigSchema = z
  .object({
    enabled: z.boolean().default(true),
    /** Where sysfs is mounted (tests point it at a directory laid out the same way). */
    sysfsRoot: z.string().min(1).max(4096).default('/sys'),
    /** How often every sensor is read, ms. A gpiomon sensor also wakes the loop at once on an edge. */
    pollIntervalMs: z.number().int().min(10).max(60_000).default(200),
    /** What a sensor that cannot be read (at the self-test or later) does: lock the device or raise an alert. */
    failMode: z.enum(['lock', 'alert']).default('lock'),
    /** The PCR the response extends; the binding key's PCR policy must cover it. */
    pcr: z
      .object({
        index: z.number().int().min(0).max(23).default(16),
        bank: z.enum(['sha1', 'sha256', 'sha384', 'sha512']).default('sha256'),
      })
      .strict()
      .prefault({}),
    /** Each response step gets at most this long before the next one starts, ms. */
    stepTimeoutMs: z.number().int().min(50).max(60_000).default(2_000),
    sensors: z
      .array(tamperSensorSchema)
      .max(32)
      .default([])
      .refine((s) => new Set(s.map((x) => x.name)).size === s.length, 'sensor names must be unique'),
  })
  .strict();

export type TamperConfig = z.infer<typeof tamperConfigSchema>;
export type TamperSensorConfig = z.infer<typeof tamperSensorSchema>;
export type GpioSensorConfig = z.infer<typeof gpioSensorSchema>;
export type AccelerometerSensorConfig = z.infer<typeof accelerometerSensorSchema>;
export type IntrusionSensorConfig = z.infer<typeof intrusionSensorSchema>;
export type CommandSensorConfig = z.infer<typeof commandSensorSchema>;

/** Validate a `tamper:` section (parsed YAML); fails with EG_CONFIG naming the first problem. */
export function parseTamperConfig(value: unknown, where = 'the tamper section'): TamperConfig {
  const r = tamperConfigSchema.safeParse(value ?? {});
  if (!r.success) {
    const issue = r.error.issues[0];
    const at = issue?.path.join('.') || 'root';
    throw new EdgeguardError('EG_CONFIG', `${where} is invalid at ${at}: ${issue?.message ?? 'schema mismatch'}.`);
  }
  return r.data;
}
