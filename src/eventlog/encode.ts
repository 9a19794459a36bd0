/**
 * Writing a crypto-agile event log (the inverse of parse.ts, same sections of the TCG PC Client
 * Platform Firmware Profile 1.05): the Spec ID Event03 header in the SHA-1 event format, then one
 * TCG_PCR_EVENT2 per event. Used to play a boot into a TPM that has no firmware (swtpm) and to
 * build logs with a known shape.
 */
import { createHash } from 'node:crypto';
import { EdgeguardError } from '../errors/index.ts';
import { HASH_ALGS } from '../tpm/index.ts';
import { EV } from './event-types.ts';
import type { EventDigest } from './parse.ts';
import { LogWriter } from './reader.ts';

export interface EventToWrite {
  pcr: number;
  type: number;
  /** One digest per bank of the log. */
  digests: EventDigest[];
  data: Uint8Array;
}

function hashInfo(alg: number) {
  const hash = HASH_ALGS[alg];
  if (!hash) throw new EdgeguardError('EG_UNSUPPORTED', `PCR bank 0x${alg.toString(16)} is not supported.`);
  return hash;
}

/** An event whose digests are the hash of its data in every bank (what firmware does for most events). */
export function measuredEvent(pcr: number, type: number, data: Uint8Array, banks: number[]): EventToWrite {
  const digests = banks.map((alg) => ({ alg, digest: createHash(hashInfo(alg).node).update(data).digest() }));
  return { pcr, type, digests, data };
}

/** The StartupLocality EV_NO_ACTION event (section 10.4.5.3): PCR 0 starts at `locality`. */
export function startupLocalityEvent(locality: number, banks: number[]): EventToWrite {
  const data = Buffer.concat([Buffer.from('StartupLocality\0', 'latin1'), Buffer.from([locality])]);
  const digests = banks.map((alg) => ({ alg, digest: Buffer.alloc(hashInfo(alg).size) }));
  return { pcr: 0, type: EV.NO_ACTION, digests, data };
}

function specIdHeader(banks: number[]): Buffer {
  const w = new LogWriter().bytes(Buffer.from('Spec ID Event03\0', 'latin1'));
  w.u32(0).u8(0).u8(2).u8(0).u8(2).u32(banks.length);
  for (const alg of banks) w.u16(alg).u16(hashInfo(alg).size);
  const data = w.u8(0).toBuffer();
  return new LogWriter().u32(0).u32(EV.NO_ACTION).bytes(Buffer.alloc(20)).u32(data.length).bytes(data).toBuffer();
}

export function encodeEventLog(banks: number[], events: EventToWrite[]): Buffer {
  const w = new LogWriter().bytes(specIdHeader(banks));
  for (const e of events) {
    w.u32(e.pcr).u32(e.type).u32(e.digests.length);
    for (const d of e.digests) w.u16(d.alg).bytes(d.digest);
    w.u32(e.data.length).bytes(e.data);
  }
  return w.toBuffer();
}
