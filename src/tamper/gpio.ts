/**
 * A case-open switch on a GPIO line, read through the kernel's GPIO character device with the
 * libgpiod 1.x tools Debian ships in the `gpiod` package (`gpioget`, `gpiomon`; the v2 tools take
 * other arguments and are not supported here). Two readers behind one small interface:
 *
 * - gpioget: one process per reading; simple, but the line is only looked at once per poll.
 * - gpiomon: holds the line and prints each edge as it happens (`-F '%o %e'`: offset, 1 rising /
 *   0 falling); the value starts from one gpioget before gpiomon takes the line. An edge in the
 *   instant between the two is missed until the next edge; gpiomon exiting makes the sensor
 *   unreadable, which failMode turns into a finding.
 *
 * - sysfs: the legacy /sys/class/gpio/gpioN/value interface (deprecated, still built into many
 *   board kernels), where N is the global GPIO number and the line must already be exported.
 *
 * The two character-device readers were not run against a real chip here (no GPIO hardware and no gpio-sim module): the output
 * parsers and the error paths of the real tools (no such chip) are what the tests cover.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { EdgeguardError } from '../errors/index.ts';
import type { GpioSensorConfig } from './config.ts';
import { firstLine, runProbe, type SensorReading, type TamperSensor } from './sensor.ts';
import { parseSysfsFlag, readSysfsAttribute } from './sysfs-value.ts';

export type GpioValue = 0 | 1;

/** Where a GPIO sensor gets its line value from. */
export interface GpioLineReader {
  read(): Promise<GpioValue>;
  start?(onEdge: () => void): Promise<void>;
  close?(): Promise<void>;
}

const GPIOGET_TIMEOUT_MS = 2_000;

function badOutput(tool: string, text: string): EdgeguardError {
  return new EdgeguardError(
    'EG_TAMPER_SENSOR',
    `${tool} printed ${JSON.stringify(text.slice(0, 40))}, not a line value; is this libgpiod 1.x (Debian's gpiod)?`,
  );
}

/** gpioget (libgpiod 1.x) prints one value per requested line: "0\n" or "1\n". */
export function parseGpiogetOutput(text: string): GpioValue {
  if (text === '0\n' || text === '0') return 0;
  if (text === '1\n' || text === '1') return 1;
  throw badOutput('gpioget', text);
}

export interface GpioEdge {
  offset: number;
  value: GpioValue;
}

/** One gpiomon line in our `-F '%o %e'` format: "17 1" (rising, the line is now 1) or "17 0". */
export function parseGpiomonLine(text: string): GpioEdge {
  const m = /^([0-9]{1,5}) ([01])$/.exec(text);
  if (!m || Number(m[1]) > 65_535) throw badOutput('gpiomon', text);
  return { offset: Number(m[1]), value: m[2] === '1' ? 1 : 0 };
}

function lineArgs(c: GpioSensorConfig): string[] {
  return [...(c.activeLow ? ['-l'] : []), c.chip, String(c.line)];
}

export class GpiogetReader implements GpioLineReader {
  constructor(private readonly config: GpioSensorConfig) {}

  async read(): Promise<GpioValue> {
    const what = `GPIO sensor ${this.config.name}`;
    const r = await runProbe(['gpioget', ...lineArgs(this.config)], GPIOGET_TIMEOUT_MS, what);
    if (r.code !== 0) {
      const why = r.timedOut ? 'timed out' : firstLine(r.stderr) || `exit ${r.code ?? r.signal}`;
      throw new EdgeguardError(
        'EG_TAMPER_SENSOR',
        `${what}: gpioget ${this.config.chip} ${this.config.line} failed (${why}); check the chip and line in the tamper config.`,
      );
    }
    return parseGpiogetOutput(r.stdout);
  }
}

export class GpiomonReader implements GpioLineReader {
  private value: GpioValue | undefined;
  private child: ChildProcess | undefined;
  private failure: EdgeguardError | undefined;

  constructor(private readonly config: GpioSensorConfig) {}

  async start(onEdge: () => void): Promise<void> {
    this.value = await new GpiogetReader(this.config).read();
    const child = spawn('gpiomon', ['-b', '-F', '%o %e', ...lineArgs(this.config)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString('latin1')).slice(0, 4096)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        const edge = parseGpiomonLine(line);
        if (edge.offset === this.config.line) this.value = edge.value;
      } catch (e) {
        this.failure = e as EdgeguardError;
      }
      onEdge();
    });
    child.on('error', (e) => this.fail(`gpiomon cannot be run (${(e as NodeJS.ErrnoException).code ?? e.message})`));
    child.on('close', (code) => {
      if (this.child === child) this.fail(`gpiomon exited (${firstLine(stderr) || `exit ${code}`})`);
      onEdge();
    });
  }

  private fail(why: string): void {
    this.failure ??= new EdgeguardError(
      'EG_TAMPER_SENSOR',
      `GPIO sensor ${this.config.name}: ${why}; the line is no longer watched.`,
    );
  }

  read(): Promise<GpioValue> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.value === undefined)
      return Promise.reject(new EdgeguardError('EG_TAMPER_SENSOR', `GPIO sensor ${this.config.name} was not started.`));
    return Promise.resolve(this.value);
  }

  async close(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('close', r));
    child.kill('SIGTERM');
    await exited;
  }
}

/** The legacy sysfs interface; the kernel applies the line's active_low before it prints the value. */
export class SysfsGpioReader implements GpioLineReader {
  private readonly path: string;

  constructor(
    private readonly config: GpioSensorConfig,
    sysfsRoot: string,
  ) {
    this.path = join(sysfsRoot, 'class', 'gpio', `gpio${config.line}`, 'value');
  }

  async read(): Promise<GpioValue> {
    const what = `GPIO sensor ${this.config.name} (gpio${this.config.line}/value)`;
    return parseSysfsFlag(await readSysfsAttribute(this.path, what), what) ? 1 : 0;
  }
}

function defaultReader(config: GpioSensorConfig, sysfsRoot: string): GpioLineReader {
  if (config.mode === 'gpiomon') return new GpiomonReader(config);
  if (config.mode === 'gpioget') return new GpiogetReader(config);
  return new SysfsGpioReader(config, sysfsRoot);
}

export class GpioSensor implements TamperSensor {
  readonly kind = 'gpio' as const;
  readonly name: string;
  readonly debounce: GpioSensorConfig['debounce'];

  private readonly reader: GpioLineReader;

  constructor(
    private readonly config: GpioSensorConfig,
    sysfsRoot: string,
    reader?: GpioLineReader,
  ) {
    this.reader = reader ?? defaultReader(config, sysfsRoot);
    this.name = config.name;
    this.debounce = config.debounce;
  }

  async start(wake: () => void): Promise<void> {
    await this.reader.start?.(wake);
  }

  async read(): Promise<SensorReading> {
    const value = await this.reader.read();
    return {
      tampered: value === this.config.tamperedValue,
      detail: `${this.config.chip} line ${this.config.line} = ${value}`,
    };
  }

  async close(): Promise<void> {
    await this.reader.close?.();
  }
}
