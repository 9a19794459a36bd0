/**
 * Public face of the audit module: the RFC 9162 Merkle tree, C2SP checkpoints and signed notes,
 * the event schema, the device journal, the witness, and the store-backed server log.
 */
export {
  type NodeId,
  type NodeSource,
  type LeafRange,
  HASH_BYTES,
  EMPTY_ROOT,
  hashLeaf,
  hashChildren,
  rangeNodes,
  rootFromLeafHashes,
  inclusionProof,
  inclusionProofRanges,
  consistencyProof,
  consistencyProofRanges,
  treeRoot,
  rootFromInclusionProof,
  verifyInclusion,
  verifyConsistency,
  CompactRange,
  MemoryNodeStore,
} from './merkle.ts';
export {
  type NoteSigner,
  type NoteVerifier,
  type NoteSignature,
  type OpenedNote,
  MAX_SIGNATURES,
  noteSigner,
  noteVerifier,
  ed25519KeyId,
  formatVerifierKey,
  formatSignerKey,
  parseVerifierKey,
  parseSignerKey,
  signNote,
  parseNote,
  openNote,
} from './note.ts';
export {
  type Checkpoint,
  type OpenedCheckpoint,
  formatCheckpoint,
  parseCheckpoint,
  signCheckpoint,
  openCheckpoint,
} from './checkpoint.ts';
export {
  type AuditEvent,
  type AuditEventType,
  type LogLeaf,
  type DeviceOrigin,
  AUDIT_EVENT_TYPES,
  EVENT_AUTHORITY,
  mayRecord,
  type EventAuthority,
  auditEventSchema,
  logLeafSchema,
  parseAuditEvent,
  canonicalJson,
  canonicalEventBytes,
  encodeLogLeaf,
  decodeLogLeaf,
} from './events.ts';
export {
  type JournalEntry,
  type JournalSigner,
  type JournalAlgorithm,
  type JournalGap,
  type ChainHead,
  JOURNAL_MAGIC,
  GENESIS_HEAD,
  Journal,
  journalSignerFromKey,
  journalAlgorithmOf,
  verifyJournalSignature,
  encodeJournalBody,
  encodeJournalRecord,
  decodeJournalRecord,
  parseJournal,
  checkJournalChain,
  checkJournalBytes,
} from './journal.ts';
export { type ConsistencyProofFetcher, type WitnessUpdate, Witness } from './witness.ts';
export { type AuditTables } from './schema.ts';
export {
  type AuditLogOptions,
  type AppendResult,
  type DeviceAppendResult,
  type StoreWork,
  type StoredCheckpoint,
  type InclusionProofResult,
  type ConsistencyReport,
  MAX_LEAF_BYTES,
  AuditLog,
  deviceLeaf,
} from './log.ts';
export {
  DEFAULT_LOG_ORIGIN,
  logOriginFor,
  LOG_KEY_FILE,
  LOG_PUB_FILE,
  generateLogSigner,
  loadOrCreateLogSigner,
  readLogVerifierKey,
} from './keys.ts';
export { type LogReader, type ProvenEntry, storeLogReader, fetchVerifiedCheckpoint, proveEntry } from './reader.ts';
export { type HttpLogReaderOptions, httpLogReader } from './http-reader.ts';
export { type JournalTransport, type ForwardResult, forwardJournal } from './forward.ts';
