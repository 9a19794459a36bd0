/**
 * Measured-boot event logs (the bytes of /sys/kernel/security/tpm0/binary_bios_measurements),
 * TCG PC Client Platform Firmware Profile 1.05: section 10.2.1 TCG_PCClientPCREvent (the SHA-1
 * "legacy" format), 10.2.2 TCG_PCR_EVENT2 (crypto-agile) and 9.4.5.1 TCG_EfiSpecIdEvent (the
 * "Spec ID Event03" header that announces the crypto-agile format and its digest sizes).
 * Everything here is outside input: every size is checked against the bytes left before it is
 * used, and a log that does not parse to its last byte is refused.
 */
import { EdgeguardError } from '../errors/index.ts';
import { HASH_ALGS, TPM_ALG } from '../tpm/index.ts';
import { EV } from './event-types.ts';
import { LogReader, malformedLog } from './reader.ts';

/** Linux caps a firmware log at what ACPI hands it; real logs are tens of KiB, large ones ~1 MiB. */
export const MAX_EVENT_LOG_BYTES = 16 * 1024 * 1024;
/** TPM_PCR_SELECT_MAX banks are far fewer than this; more means garbage, not a TPM. */
const MAX_ALGORITHMS = 16;
const MAX_DIGEST_SIZE = 64;
/** PC-client TPMs have 24 PCRs. */
export const MAX_PCR_INDEX = 23;

const SPEC_ID_SIGNATURE = Buffer.from('Spec ID Event03\0', 'latin1');
const SPEC_ID_PREFIX = Buffer.from('Spec ID Event', 'latin1');
const SHA1_SIZE = 20;

export interface EventDigest {
  /** TPM_ALG_ID of the PCR bank. */
  alg: number;
  digest: Buffer;
}

export interface LogEvent {
  /** Position in the log; 0 is the first event (the Spec ID header in a crypto-agile log). */
  sequence: number;
  /** Byte offset of the event in the log. */
  offset: number;
  pcr: number;
  type: number;
  /** One digest per bank, in the order the log lists them. */
  digests: EventDigest[];
  data: Buffer;
}

export interface SpecIdAlgorithm {
  alg: number;
  digestSize: number;
}

export interface SpecIdEvent {
  platformClass: number;
  specVersionMinor: number;
  specVersionMajor: number;
  specErrata: number;
  uintnSize: number;
  algorithms: SpecIdAlgorithm[];
  vendorInfo: Buffer;
}

export interface EventLog {
  format: 'crypto-agile' | 'sha1';
  /** The crypto-agile header; absent in a SHA-1 log. */
  specId?: SpecIdEvent;
  events: LogEvent[];
}

export interface ParseEventLogOptions {
  /** Refuse logs larger than this (default MAX_EVENT_LOG_BYTES). */
  maxBytes?: number;
}

export function parseEventLog(bytes: Uint8Array, opts: ParseEventLogOptions = {}): EventLog {
  const maxBytes = opts.maxBytes ?? MAX_EVENT_LOG_BYTES;
  if (bytes.length > maxBytes)
    throw new EdgeguardError(
      'EG_EVENTLOG_TOO_LARGE',
      `the event log is ${bytes.length} bytes, more than the ${maxBytes} accepted; it is not a firmware log.`,
      { details: { size: bytes.length, maxBytes } },
    );
  if (bytes.length === 0) throw malformedLog('it is empty');
  const r = new LogReader(bytes, 'event 0');
  const first = readSha1Event(r, 0);
  const specId = first.type === EV.NO_ACTION ? parseHeaderEvent(first) : undefined;
  const events = [first];
  while (r.remaining > 0) {
    r.what = `event ${events.length}`;
    events.push(specId ? readAgileEvent(r, events.length, specId) : readSha1Event(r, events.length));
  }
  return specId ? { format: 'crypto-agile', specId, events } : { format: 'sha1', events };
}

/**
 * A measured event names a PCR the TPM has. EV_NO_ACTION events are never extended, and some
 * firmware logs them with index 0xFFFFFFFF (option_rom_eventlog ends with one), so they may name any.
 */
function checkPcrIndex(r: LogReader, pcr: number, type: number, offset: number): void {
  if (pcr > MAX_PCR_INDEX && type !== EV.NO_ACTION)
    throw malformedLog(`${r.what} extends PCR ${pcr}; a PC-client TPM has PCRs 0 to 23`, offset);
}

/** TCG_PCClientPCREvent: pcrIndex, eventType, a SHA-1 digest, eventDataSize, event. */
function readSha1Event(r: LogReader, sequence: number): LogEvent {
  const offset = r.position;
  const pcr = r.u32('pcrIndex');
  const type = r.u32('eventType');
  checkPcrIndex(r, pcr, type, offset);
  const digest = r.bytes(SHA1_SIZE, 'digest');
  const data = r.bytes(r.u32('eventDataSize'), 'event');
  return { sequence, offset, pcr, type, digests: [{ alg: TPM_ALG.SHA1, digest }], data };
}

/** TCG_PCR_EVENT2: pcrIndex, eventType, TPML_DIGEST_VALUES (one digest per header bank), eventSize, event. */
function readAgileEvent(r: LogReader, sequence: number, specId: SpecIdEvent): LogEvent {
  const offset = r.position;
  const pcr = r.u32('pcrIndex');
  const type = r.u32('eventType');
  checkPcrIndex(r, pcr, type, offset);
  const count = r.u32('digests.count');
  // Every event carries exactly the header's banks (section 10.2.2): a missing bank could not be replayed.
  if (count !== specId.algorithms.length)
    throw malformedLog(
      `${r.what} has ${count} digests; the header announces ${specId.algorithms.length} banks`,
      offset,
    );
  const digests: EventDigest[] = [];
  for (let i = 0; i < count; i++) {
    const alg = r.u16('digests.hashAlg');
    const bank = specId.algorithms.find((a) => a.alg === alg);
    if (!bank) throw malformedLog(`${r.what} has a digest for bank 0x${alg.toString(16)}, not in the header`, offset);
    if (digests.some((d) => d.alg === alg))
      throw malformedLog(`${r.what} has two digests for bank 0x${alg.toString(16)}`, offset);
    digests.push({ alg, digest: r.bytes(bank.digestSize, 'digests.digest') });
  }
  const data = r.bytes(r.u32('eventSize'), 'event');
  return { sequence, offset, pcr, type, digests, data };
}

/**
 * The first event of a crypto-agile log is an EV_NO_ACTION on PCR 0 with a zero digest whose data
 * is the Spec ID Event03 structure. A TPM 1.2 header ("Spec ID Event00"/"02") keeps the SHA-1
 * format; any other EV_NO_ACTION first is refused, because the profile requires the header first.
 */
function parseHeaderEvent(first: LogEvent): SpecIdEvent | undefined {
  if (!first.data.subarray(0, SPEC_ID_PREFIX.length).equals(SPEC_ID_PREFIX))
    throw malformedLog('the first event is EV_NO_ACTION but not a Spec ID header', first.offset);
  if (!first.data.subarray(0, SPEC_ID_SIGNATURE.length).equals(SPEC_ID_SIGNATURE)) return undefined;
  if (first.pcr !== 0 || first.digests[0]!.digest.some((b) => b !== 0))
    throw malformedLog('the Spec ID header is not on PCR 0 with a zero digest', first.offset);
  return parseSpecId(first.data);
}

function parseSpecId(data: Buffer): SpecIdEvent {
  const r = new LogReader(data, 'the Spec ID header');
  r.bytes(SPEC_ID_SIGNATURE.length, 'signature');
  const platformClass = r.u32('platformClass');
  const specVersionMinor = r.u8('specVersionMinor');
  const specVersionMajor = r.u8('specVersionMajor');
  const specErrata = r.u8('specErrata');
  const uintnSize = r.u8('uintnSize');
  const count = r.u32('numberOfAlgorithms');
  if (count === 0 || count > MAX_ALGORITHMS)
    throw malformedLog(`the Spec ID header announces ${count} banks (1 to ${MAX_ALGORITHMS} allowed)`);
  const algorithms: SpecIdAlgorithm[] = [];
  for (let i = 0; i < count; i++) algorithms.push(readSpecIdAlgorithm(r, algorithms));
  const vendorInfo = r.bytes(r.u8('vendorInfoSize'), 'vendorInfo');
  r.end();
  return { platformClass, specVersionMinor, specVersionMajor, specErrata, uintnSize, algorithms, vendorInfo };
}

function readSpecIdAlgorithm(r: LogReader, seen: SpecIdAlgorithm[]): SpecIdAlgorithm {
  const alg = r.u16('algorithmId');
  const digestSize = r.u16('digestSize');
  const known = HASH_ALGS[alg];
  if (seen.some((a) => a.alg === alg)) throw malformedLog(`the Spec ID header lists bank 0x${alg.toString(16)} twice`);
  if (known ? digestSize !== known.size : digestSize === 0 || digestSize > MAX_DIGEST_SIZE)
    throw malformedLog(`the Spec ID header gives bank 0x${alg.toString(16)} a digest size of ${digestSize}`);
  return { alg, digestSize };
}

/** The banks a log measures into: the header's algorithms, or SHA-1 alone. */
export function logBanks(log: EventLog): number[] {
  return log.specId ? log.specId.algorithms.map((a) => a.alg) : [TPM_ALG.SHA1];
}
