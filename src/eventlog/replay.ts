/**
 * PCR replay (TCG PC Client Platform Firmware Profile 1.05, section 10.4.5.3 "Startup Locality
 * Event" and the extend rule of TPM 2.0 Library Part 1, 17.6.6): for every bank, every PCR starts
 * at zero and each measured event extends it, PCR = H(PCR || digest). EV_NO_ACTION events are
 * not extended; the one exception to "starts at zero" is the StartupLocality event, which tells
 * that PCR 0 started at the locality TPM2_Startup ran from (its last byte), as H-CRTM platforms do.
 */
import { HASH_ALGS, type PcrSelection, type PcrValues } from '../tpm/index.ts';
import { digestOf } from './digest.ts';
import { EV } from './event-types.ts';
import { logBanks, type EventLog, type LogEvent } from './parse.ts';
import { malformedLog } from './reader.ts';

const STARTUP_LOCALITY = Buffer.from('StartupLocality\0', 'latin1');

/** The locality byte of a StartupLocality event, or undefined for any other event. */
export function startupLocality(event: Pick<LogEvent, 'pcr' | 'type' | 'data'>): number | undefined {
  if (event.type !== EV.NO_ACTION || !event.data.subarray(0, STARTUP_LOCALITY.length).equals(STARTUP_LOCALITY))
    return undefined;
  if (event.pcr !== 0 || event.data.length !== STARTUP_LOCALITY.length + 1)
    throw malformedLog('a StartupLocality event is not one locality byte on PCR 0');
  return event.data[STARTUP_LOCALITY.length]!;
}

/**
 * The PCR values the log says the TPM holds, per bank name (sha1, sha256, ...), for every PCR the
 * log touches. Banks whose hash edgeguard cannot compute are left out, and so are banks not in
 * `only` when it is given (a verifier replays the banks a quote covers, not every bank the log has).
 */
export function replayEventLog(log: EventLog, only?: readonly number[]): PcrValues {
  const banks = logBanks(log).filter((alg) => HASH_ALGS[alg] && (only === undefined || only.includes(alg)));
  const out: PcrValues = {};
  for (const alg of banks) out[HASH_ALGS[alg]!.name] = {};
  for (const event of log.events) {
    const locality = startupLocality(event);
    if (locality !== undefined) {
      for (const alg of banks) setStartupLocality(out[HASH_ALGS[alg]!.name]!, HASH_ALGS[alg]!.size, locality, event);
      continue;
    }
    if (event.type === EV.NO_ACTION) continue;
    for (const { alg, digest } of event.digests) {
      const hash = HASH_ALGS[alg];
      const bank = hash && out[hash.name];
      if (!bank) continue;
      const before = bank[event.pcr] ?? Buffer.alloc(hash.size);
      bank[event.pcr] = digestOf(hash.node, Buffer.concat([before, digest], before.length + digest.length));
    }
  }
  return out;
}

function setStartupLocality(bank: Record<number, Buffer>, size: number, locality: number, event: LogEvent): void {
  if (bank[0] !== undefined)
    throw malformedLog(`event ${event.sequence} sets PCR 0's startup locality after PCR 0 was extended`);
  const initial = Buffer.alloc(size);
  initial[size - 1] = locality;
  bank[0] = initial;
}

/** PC Client PTP 1.05, 3.7.1.1: the DRTM PCRs 17-22 reset to all ones, the others to zero. */
function resetValue(pcr: number, size: number): Buffer {
  return Buffer.alloc(size, pcr >= 17 && pcr <= 22 ? 0xff : 0);
}

/**
 * The replayed values for a quote's PCR selection: a PCR the log never touches holds its reset
 * value, which is what the TPM would quote for it. A bank the log does not measure is left out,
 * so a quote over it cannot be matched.
 */
export function replayedPcrsFor(replayed: PcrValues, selection: PcrSelection): PcrValues {
  const out: PcrValues = {};
  for (const { hashAlg, pcrs } of selection) {
    const hash = HASH_ALGS[hashAlg];
    const logBank = hash && replayed[hash.name];
    if (!hash || !logBank) continue;
    const bank: Record<number, Buffer> = {};
    for (const pcr of pcrs) bank[pcr] = logBank[pcr] ?? resetValue(pcr, hash.size);
    out[hash.name] = bank;
  }
  return out;
}
