/** Reading a log from disk (a copy of binary_bios_measurements) without trusting its size. */
import { open } from 'node:fs/promises';
import { EdgeguardError, fsError } from '../errors/index.ts';
import { MAX_EVENT_LOG_BYTES, parseEventLog, type EventLog } from './parse.ts';

/** The file's bytes, refused before reading when larger than the parser accepts. */
export async function readEventLogBytes(path: string, maxBytes = MAX_EVENT_LOG_BYTES): Promise<Buffer> {
  const file = await open(path, 'r').catch((e) => {
    throw fsError(e, path, 'open');
  });
  try {
    const { size } = await file.stat();
    if (size > maxBytes)
      throw new EdgeguardError(
        'EG_EVENTLOG_TOO_LARGE',
        `${path} is ${size} bytes, more than the ${maxBytes} an event log may have; it is not a firmware log.`,
      );
    // sysfs reports size 0 for binary_bios_measurements: read to the end, still bounded.
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const { bytesRead, buffer } = await file.read({ buffer: Buffer.alloc(64 * 1024) });
      if (bytesRead === 0) break;
      total += bytesRead;
      if (total > maxBytes)
        throw new EdgeguardError(
          'EG_EVENTLOG_TOO_LARGE',
          `${path} holds more than the ${maxBytes} bytes an event log may have.`,
        );
      chunks.push(buffer.subarray(0, bytesRead));
    }
    return Buffer.concat(chunks);
  } catch (e) {
    throw fsError(e, path, 'read');
  } finally {
    await file.close();
  }
}

export async function readEventLogFile(path: string): Promise<EventLog> {
  return parseEventLog(await readEventLogBytes(path));
}
