/**
 * The chassis-intrusion alarm a hwmon driver exposes (Linux Documentation/ABI/testing/
 * sysfs-class-hwmon, intrusion[0-*]_alarm): 1 once the case switch has opened, latched by the
 * hardware until an operator writes 0, so an opening while the device was off is seen at start.
 */
import { join } from 'node:path';
import type { IntrusionSensorConfig } from './config.ts';
import type { SensorReading, TamperSensor } from './sensor.ts';
import { parseSysfsFlag, readSysfsAttribute } from './sysfs-value.ts';

export class IntrusionSensor implements TamperSensor {
  readonly kind = 'intrusion' as const;
  readonly name: string;
  readonly debounce: IntrusionSensorConfig['debounce'];
  private readonly path: string;
  private readonly attribute: string;

  constructor(config: IntrusionSensorConfig, sysfsRoot: string) {
    this.name = config.name;
    this.debounce = config.debounce;
    this.attribute = `intrusion${config.index}_alarm`;
    this.path = join(sysfsRoot, 'class', 'hwmon', config.hwmon, this.attribute);
  }

  async read(): Promise<SensorReading> {
    const what = `intrusion sensor ${this.name} (${this.attribute})`;
    const alarm = parseSysfsFlag(await readSysfsAttribute(this.path, what), what);
    return { tampered: alarm, detail: `${this.attribute} = ${alarm ? 1 : 0}` };
  }
}
