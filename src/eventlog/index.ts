/**
 * Measured-boot event logs: parsing (parse.ts: crypto-agile and SHA-1 formats, bounded), PCR replay
 * (replay.ts), and writing logs (encode.ts) so a boot can be played into a TPM without firmware.
 */
export { EV, eventTypeName } from './event-types.ts';
export {
  parseEventLog,
  logBanks,
  MAX_EVENT_LOG_BYTES,
  MAX_PCR_INDEX,
  type EventLog,
  type LogEvent,
  type EventDigest,
  type SpecIdEvent,
  type SpecIdAlgorithm,
  type ParseEventLogOptions,
} from './parse.ts';
export { replayEventLog, replayedPcrsFor, startupLocality } from './replay.ts';
export { encodeEventLog, measuredEvent, startupLocalityEvent, type EventToWrite } from './encode.ts';
