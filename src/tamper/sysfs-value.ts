/**
 * Values read from sysfs attributes (Linux Documentation/ABI/testing/sysfs-bus-iio and
 * sysfs-class-hwmon): one value per file, ASCII, usually ending in a newline. These bytes come
 * from a kernel driver, or from whoever can write the file, so each parser accepts exactly the
 * form the ABI documents, within tight bounds, and anything else is EG_TAMPER_SENSOR.
 */
import { open } from 'node:fs/promises';
import { EdgeguardError } from '../errors/index.ts';

/** sysfs hands out at most a page per attribute; a value of ours is far shorter. */
const MAX_ATTRIBUTE_BYTES = 64;

function unreadable(what: string, why: string): EdgeguardError {
  return new EdgeguardError('EG_TAMPER_SENSOR', `${what} ${why}; check the sensor's driver and the tamper config.`);
}

function body(text: string, what: string): string {
  if (text.length === 0) throw unreadable(what, 'is empty');
  if (text.length > MAX_ATTRIBUTE_BYTES) throw unreadable(what, `is longer than ${MAX_ATTRIBUTE_BYTES} bytes`);
  return text.endsWith('\n') ? text.slice(0, -1) : text;
}

/** A signed decimal integer such as in_accel_x_raw ("-512\n"), within the safe integer range. */
export function parseSysfsInteger(text: string, what: string): number {
  const v = body(text, what);
  if (!/^-?[0-9]{1,16}$/.test(v)) throw unreadable(what, `is not an integer (${JSON.stringify(v.slice(0, 20))})`);
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw unreadable(what, 'is out of range');
  return n;
}

/** A decimal fraction such as in_accel_scale ("0.009576806\n"): IIO prints IIO_VAL_INT_PLUS_* this way. */
export function parseSysfsDecimal(text: string, what: string): number {
  const v = body(text, what);
  if (!/^-?[0-9]{1,12}(\.[0-9]{1,18})?$/.test(v))
    throw unreadable(what, `is not a decimal number (${JSON.stringify(v.slice(0, 20))})`);
  return Number(v);
}

/** A hwmon alarm flag (intrusionN_alarm): "0" or "1". */
export function parseSysfsFlag(text: string, what: string): boolean {
  const v = body(text, what);
  if (v !== '0' && v !== '1') throw unreadable(what, `is not 0 or 1 (${JSON.stringify(v.slice(0, 20))})`);
  return v === '1';
}

/** Read one attribute, at most a little more than a value can be long, so a huge file is refused unread. */
export async function readSysfsAttribute(path: string, what: string): Promise<string> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'error';
    throw new EdgeguardError(
      'EG_TAMPER_SENSOR',
      `${what} (${path}) cannot be read (${code}); is the driver loaded and the path in the tamper config right?`,
      { cause: e },
    );
  }
  try {
    const buf = Buffer.alloc(MAX_ATTRIBUTE_BYTES + 1);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return buf.subarray(0, bytesRead).toString('latin1');
  } catch (e) {
    throw new EdgeguardError('EG_TAMPER_SENSOR', `${what} (${path}) cannot be read: ${(e as Error).message}.`, {
      cause: e,
    });
  } finally {
    await fh.close();
  }
}
