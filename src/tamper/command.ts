/** A generic probe: a program (no shell) that exits 0 while all is well and non-zero once it is not. */
import { EdgeguardError } from '../errors/index.ts';
import type { CommandSensorConfig } from './config.ts';
import { firstLine, runProbe, type SensorReading, type TamperSensor } from './sensor.ts';

export class CommandSensor implements TamperSensor {
  readonly kind = 'command' as const;
  readonly name: string;
  readonly debounce: CommandSensorConfig['debounce'];

  constructor(private readonly config: CommandSensorConfig) {
    this.name = config.name;
    this.debounce = config.debounce;
  }

  async read(): Promise<SensorReading> {
    const what = `command sensor ${this.name}`;
    const r = await runProbe(this.config.argv, this.config.timeoutMs, what);
    if (r.timedOut)
      throw new EdgeguardError(
        'EG_TAMPER_SENSOR',
        `${what}: ${this.config.argv[0]} did not finish within ${this.config.timeoutMs} ms.`,
      );
    if (r.code === 0) return { tampered: false, detail: 'exit 0' };
    const why = firstLine(r.stderr) || firstLine(r.stdout);
    return { tampered: true, detail: `exit ${r.code ?? r.signal}${why ? `: ${why}` : ''}` };
  }
}
