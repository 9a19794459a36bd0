/**
 * The device <-> control-plane contract, shared by the agent, the server and the CLI: the pinned
 * mTLS client, the device side of enrollment and renewal, the device's TLS key at rest, the sealed
 * review item and its spool, the device record as the API shows it, and retry pacing. Nothing here
 * knows which app it runs in.
 */
export { FleetClient, serverError, type FleetClientOptions, type FleetResponse } from './client.ts';
export {
  FLEET_FILES,
  FLEET_SUBDIR,
  deviceClient,
  enrollDevice,
  enrolledServer,
  loadDeviceCredential,
  renewIfDue,
  requestRenewal,
  writeAtomic,
  type DeviceCredential,
  type EnrollOptions,
  type EnrollResult,
  type PollOptions,
} from './enrollment.ts';
export { FLEET_JOURNAL_FILE, retireEnrollment, type RetiredEnrollment } from './reenroll.ts';
export { TLS_KEY_TYPE, createWrappedTlsKey, loadWrappedTlsKey, loadDeviceTlsKey } from './tls-key.ts';
export {
  MAX_REVIEW_METADATA_BYTES,
  MAX_SEALED_BYTES,
  REVIEW_AAD_BYTES,
  REVIEW_HEADER_BYTES,
  REVIEW_INFO,
  REVIEW_MAGIC,
  REVIEW_VERSION,
  openReviewItem,
  parseReviewItem,
  reviewKeyId,
  sealReviewItem,
  type OpenedReviewItem,
  type ReviewHeader,
  type ReviewMetadata,
} from './review-item.ts';
export {
  ReviewSpool,
  SPOOL_SUFFIX,
  spoolFileName,
  type SpoolEntry,
  type SpoolEvents,
  type SpoolOptions,
} from './review-spool.ts';
export { DEVICE_STATUSES, DEVICE_VIEW_SCHEMA, deviceView, type DeviceView } from './device-view.ts';
export { parseAnswer } from './answer.ts';
export {
  AuditAppendAnswer,
  AuditEntriesAnswer,
  CertificateRevokeAnswer,
  DeviceListAnswer,
  DeviceRevokeAnswer,
  DeviceViewAnswer,
  DirectorKeysAnswer,
  LoginLinkAnswer,
  PolicyStoredAnswer,
  ReviewItemAnswer,
  ReviewPageAnswer,
} from './admin-answers.ts';
export { backoffDelay } from './backoff.ts';
export { EgressDialer, type EgressDenial } from './egress-dialer.ts';
export {
  AttestationStatus,
  decodeEvidence,
  encodeEvidence,
  EVIDENCE_MEDIA_TYPE,
  evidenceFromJson,
  EvidenceRequest,
  isBase64Text,
  MAX_EVIDENCE_BODY_BYTES,
  MAX_EVIDENCE_LOG_BYTES,
  MAX_QUOTE_BYTES,
  NextNonce,
  NonceResponse,
  VerdictResponse,
  pushAttestationEvidence,
  requestAttestationNonce,
  type DecodedEvidence,
  type Evidence,
} from './attestation.ts';
export {
  ChecklistUploadResponse,
  DeviceChecklist,
  FleetChecklist,
  FleetChecklistEntry,
  fetchFleetChecklist,
  uploadChecklistReport,
} from './checklist.ts';
export {
  AssignRequest,
  Assignment,
  DeviceReleaseStatus,
  MAX_VERSION_REPORT_BYTES,
  RELEASE_NAME_RE,
  ReleaseStatusResponse,
  ReportNonce,
  ReportRequest,
  VERSION_REPORT_PAYLOAD_TYPE,
  VERSION_REPORT_TYPE,
  VersionReport,
  reportInstalledVersion,
  signVersionReport,
  verifyVersionReport,
} from './release.ts';
