/**
 * The tamper monitor: builds the configured sensors, self-tests them at start (each must be read
 * once; one that cannot be read is itself a finding), then reads every sensor each poll interval
 * (and at once when a sensor reports an edge), debounces, and reports the first confirmed finding
 * exactly once. After that it stops: the device is being locked and nothing here can unlock it.
 *
 * An unreadable sensor (driver gone, wire cut, probe hanging) follows failMode: `lock` treats it
 * like a tampered reading (debounced the same way, except at the self-test, where it counts at
 * once); `alert` reports it through onAlert and keeps watching the other sensors.
 */
import { performance } from 'node:perf_hooks';
import { isEdgeguardError } from '../errors/index.ts';
import { AccelerometerSensor } from './accelerometer.ts';
import { CommandSensor } from './command.ts';
import type { TamperConfig, TamperSensorConfig } from './config.ts';
import { CLEAR, debounceStep, type DebounceState } from './debounce.ts';
import { GpioSensor } from './gpio.ts';
import { IntrusionSensor } from './intrusion.ts';
import type { SensorReading, TamperSensor, TamperSensorKind } from './sensor.ts';

export interface TamperFinding {
  sensor: string;
  kind: TamperSensorKind;
  /** `tampered`: the sensor saw it; `unreadable`: the sensor could not be read (failMode). */
  cause: 'tampered' | 'unreadable';
  detail: string;
  /** When the finding was confirmed. */
  at: Date;
}

export interface TamperHandlers {
  /** Called once, with the first confirmed finding; the agent starts the response here. */
  onTamper(finding: TamperFinding): void;
  /** failMode alert: a sensor cannot be read (called once per sensor until it reads again). */
  onAlert?(finding: TamperFinding): void;
}

export function createTamperSensor(config: TamperSensorConfig, sysfsRoot: string): TamperSensor {
  switch (config.kind) {
    case 'gpio':
      return new GpioSensor(config, sysfsRoot);
    case 'accelerometer':
      return new AccelerometerSensor(config, sysfsRoot);
    case 'intrusion':
      return new IntrusionSensor(config, sysfsRoot);
    case 'command':
      return new CommandSensor(config);
  }
}

/** One reading of one sensor, or why it could not be read. */
export type SensorOutcome = { ok: true; reading: SensorReading } | { ok: false; error: string };

async function readSensor(sensor: TamperSensor): Promise<SensorOutcome> {
  try {
    return { ok: true, reading: await sensor.read() };
  } catch (e) {
    // Whatever went wrong, the sensor was not read: that is a finding (failMode), never a crash.
    return { ok: false, error: isEdgeguardError(e) ? e.message : `${sensor.name}: ${String(e)}` };
  }
}

export class TamperMonitor {
  readonly sensors: readonly TamperSensor[];
  private readonly states = new Map<string, DebounceState>();
  private readonly alerted = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  private fired = false;

  constructor(
    private readonly config: Pick<TamperConfig, 'sysfsRoot' | 'pollIntervalMs' | 'failMode' | 'sensors'>,
    private readonly handlers: TamperHandlers,
  ) {
    this.sensors = config.sensors.map((s) => createTamperSensor(s, config.sysfsRoot));
  }

  /**
   * Start the sensors, read each once (the self-test) and begin polling. Resolves with the
   * self-test's readings; a finding it makes has already been reported to the handlers.
   */
  async start(): Promise<Map<string, SensorOutcome>> {
    const wake = () => this.wake();
    const results = new Map<string, SensorOutcome>();
    for (const sensor of this.sensors) {
      try {
        await sensor.start?.(wake);
      } catch (e) {
        results.set(sensor.name, { ok: false, error: isEdgeguardError(e) ? e.message : String(e) });
      }
    }
    await Promise.all(
      this.sensors.map(async (s) => {
        const outcome = results.get(s.name) ?? (await readSensor(s));
        results.set(s.name, outcome);
        this.judge(s, outcome, true);
      }),
    );
    this.schedule();
    return results;
  }

  /** Stop polling and release the sensors (gpiomon children). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
    await Promise.all(this.sensors.map((s) => s.close?.()));
  }

  private schedule(): void {
    if (this.stopped || this.fired) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.wake(), this.config.pollIntervalMs);
  }

  private wake(): void {
    if (this.stopped || this.fired) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.poll().finally(() => {
      this.running = undefined;
      if (this.again) {
        this.again = false;
        this.wake();
      } else this.schedule();
    });
  }

  private async poll(): Promise<void> {
    const outcomes = await Promise.all(this.sensors.map(readSensor));
    this.sensors.forEach((s, i) => this.judge(s, outcomes[i]!, false));
  }

  private judge(sensor: TamperSensor, outcome: SensorOutcome, selfTest: boolean): void {
    if (this.fired || this.stopped) return;
    const unreadable = !outcome.ok;
    const finding = (cause: TamperFinding['cause'], detail: string): TamperFinding => ({
      sensor: sensor.name,
      kind: sensor.kind,
      cause,
      detail: selfTest ? `self-test: ${detail}` : detail,
      at: new Date(),
    });
    if (unreadable && this.config.failMode === 'alert') {
      this.states.set(sensor.name, CLEAR);
      if (!this.alerted.has(sensor.name)) {
        this.alerted.add(sensor.name);
        this.handlers.onAlert?.(finding('unreadable', outcome.error));
      }
      return;
    }
    if (outcome.ok) this.alerted.delete(sensor.name);
    const bad = unreadable || outcome.reading.tampered;
    const step = debounceStep(this.states.get(sensor.name) ?? CLEAR, bad, performance.now(), sensor.debounce);
    this.states.set(sensor.name, step.state);
    // A sensor that cannot be read at start is a finding at once: there is nothing to debounce against.
    if (step.confirmed || (unreadable && selfTest)) {
      this.fired = true;
      clearTimeout(this.timer);
      this.handlers.onTamper(
        outcome.ok ? finding('tampered', outcome.reading.detail) : finding('unreadable', outcome.error),
      );
    }
  }
}
