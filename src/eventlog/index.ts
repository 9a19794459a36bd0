/**
 * Measured-boot event logs: parsing (parse.ts: crypto-agile and SHA-1 formats, bounded), PCR replay
 * (replay.ts), writing logs (encode.ts) so a boot can be played into a TPM without firmware, and
 * what a log proves when only digests are trusted: the Secure Boot state from PCR 7
 * (secure-boot.ts, uefi.ts) and the images, files and command line that booted (boot-components.ts).
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
export {
  deriveSecureBootState,
  SECURE_BOOT_PCR,
  type SecureBootState,
  type MeasuredVariable,
  type Finding,
  type FindingCode,
} from './secure-boot.ts';
export {
  extractBootComponents,
  IMAGE_PCR,
  GRUB_COMMAND_PCR,
  GRUB_FILE_PCR,
  type BootComponent,
  type BootComponents,
  type ComponentKind,
} from './boot-components.ts';
export {
  parseUefiVariableData,
  encodeUefiVariableData,
  parseSignatureDatabase,
  encodeSignatureList,
  formatGuid,
  EFI_GLOBAL_VARIABLE,
  EFI_IMAGE_SECURITY_DATABASE,
  EFI_CERT_SHA256,
  EFI_CERT_X509,
  MAX_SIGNATURE_ENTRIES,
  type UefiVariableData,
  type SignatureEntry,
} from './uefi.ts';
export { digestsMatch } from './verify-digest.ts';
export { readEventLogBytes, readEventLogFile } from './file.ts';
export { eventLogReport, formatEventLogReport, type EventLogReport } from './report.ts';
export { playBoot, eventsToReplay, type PcrExtender } from './play.ts';
export { syntheticBootEvents, defaultSyntheticBoot, type SyntheticBoot } from './synthetic-boot.ts';
export {
  predictPcrs,
  predictionFile,
  PCR_PREDICTION_TYPE,
  type BankDigests,
  type BootChanges,
  type PcrPrediction,
  type PcrPredictionFile,
  type ReplacedEvent,
} from './predict.ts';
