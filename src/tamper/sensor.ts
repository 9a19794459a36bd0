/** What every tamper sensor offers the monitor, and the child-process runner the probes share. */
import { spawn } from 'node:child_process';
import { EdgeguardError } from '../errors/index.ts';

export type TamperSensorKind = 'gpio' | 'accelerometer' | 'intrusion' | 'command';

export interface SensorReading {
  tampered: boolean;
  /** One line for the journal: what was seen ("intrusion0_alarm = 1", "tilt 34.2 deg > 20 deg"). */
  detail: string;
}

export interface Debounce {
  readings: number;
  holdMs: number;
}

export interface TamperSensor {
  readonly name: string;
  readonly kind: TamperSensorKind;
  readonly debounce: Debounce;
  /** One reading; throws EG_TAMPER_SENSOR when the sensor cannot be read. */
  read(): Promise<SensorReading>;
  /** Sensors that report edges call `wake` so the monitor reads at once instead of at the next poll. */
  start?(wake: () => void): Promise<void>;
  close?(): Promise<void>;
}

export interface ProbeResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  stdout: string;
  stderr: string;
}

/** Output beyond this is dropped: a probe prints a value or an error line, not a stream. */
const MAX_PROBE_OUTPUT = 4096;

/**
 * Run argv without a shell and wait for it to exit (or be killed at `timeoutMs`). A program that
 * cannot be started is EG_TAMPER_SENSOR: for a probe, "cannot run" and "cannot read" are the same.
 */
export function runProbe(argv: readonly string[], timeoutMs: number, what: string): Promise<ProbeResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout = (stdout + d.toString('latin1')).slice(0, MAX_PROBE_OUTPUT)));
    child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString('latin1')).slice(0, MAX_PROBE_OUTPUT)));
    child.on('error', (e: NodeJS.ErrnoException) =>
      reject(
        new EdgeguardError('EG_TAMPER_SENSOR', `${what}: ${argv[0]} cannot be run (${e.code ?? e.message}).`, {
          cause: e,
        }),
      ),
    );
    child.on('close', (code, signal) =>
      resolve({ code, signal, timedOut: child.killed && signal !== null, stdout, stderr }),
    );
  });
}

/** The first line of a tool's complaint, for an error message. */
export function firstLine(text: string): string {
  return text.trim().split('\n')[0]?.slice(0, 200) ?? '';
}
