/**
 * Playing a boot into a TPM that has no firmware (swtpm, for tests and the demo): extend each
 * event's digests into the TPM's PCRs, in log order, and return the crypto-agile log that records
 * exactly those extends. A real quote over those PCRs then matches the replayed log, as on a device.
 */
import { EdgeguardError } from '../errors/index.ts';
import { HASH_ALGS } from '../tpm/index.ts';
import { encodeEventLog, type EventToWrite } from './encode.ts';
import { EV } from './event-types.ts';
import type { EventLog } from './parse.ts';
import { startupLocality } from './replay.ts';

/** What playing needs from a TPM (TpmClient has it); `extendPcrs`, when there, does them in one go. */
export interface PcrExtender {
  extendPcr(index: number, bank: string, digest: Uint8Array): Promise<void>;
  extendPcrs?(extensions: Array<{ index: number; bank: string; digest: Uint8Array }>): Promise<void>;
}

export async function playBoot(tpm: PcrExtender, banks: number[], events: EventToWrite[]): Promise<Buffer> {
  const log = encodeEventLog(banks, events);
  const extensions: Array<{ index: number; bank: string; digest: Uint8Array }> = [];
  for (const event of events) {
    if (event.type === EV.NO_ACTION) {
      if (startupLocality({ ...event, data: Buffer.from(event.data) }) !== undefined)
        throw new EdgeguardError(
          'EG_USAGE',
          'a played boot starts at locality 0; it cannot replay a StartupLocality event.',
        );
      continue;
    }
    for (const { alg, digest } of event.digests)
      extensions.push({ index: event.pcr, bank: HASH_ALGS[alg]!.name, digest });
  }
  if (tpm.extendPcrs) await tpm.extendPcrs(extensions);
  else for (const e of extensions) await tpm.extendPcr(e.index, e.bank, e.digest);
  return log;
}

/**
 * The events of a recorded log, ready to play into a TPM with `banks` (a subset of the log's):
 * the header is dropped (encodeEventLog writes its own) and each event keeps only those banks.
 */
export function eventsToReplay(log: EventLog, banks: number[]): EventToWrite[] {
  return log.events.slice(log.specId ? 1 : 0).map((e) => {
    const digests = banks.map((alg) => {
      const d = e.digests.find((x) => x.alg === alg);
      if (!d) throw new EdgeguardError('EG_USAGE', `the log has no digests for bank 0x${alg.toString(16)}.`);
      return d;
    });
    return { pcr: e.pcr, type: e.type, digests, data: e.data };
  });
}
