/**
 * Remote attestation on the verifier side: MakeCredential (credential.ts), EK certificate chains
 * (ek.ts), attestation-key policy (ak.ts), the enrollment evidence check that composes them
 * (enrollment.ts), the enrollment protocol's messages (protocol.ts), and measured-boot appraisal:
 * boot policies (boot-policy.ts), the verdict on a quote with its event log (appraise.ts), the
 * log analyses kept between pushes (log-analysis-cache.ts) and the quote's clock rules (quote-clock.ts).
 */
export {
  makeCredential,
  parseCredentialBlob,
  CREDENTIAL_FILE_MAGIC,
  type MadeCredential,
  type ParsedCredentialBlob,
} from './credential.ts';
export { kdfa, kdfe } from './kdf.ts';
export {
  loadEkTrustStore,
  verifyEkCertificate,
  ekPublicKeyHash,
  EK_ROOTS_SUBDIR,
  type EkTrustStore,
  type VerifiedEkCertificate,
} from './ek.ts';
export { checkAttestationKey, checkResidentKey, MIN_RSA_BITS } from './ak.ts';
export { verifyTpmEvidence, type TpmEvidence, type VerifiedTpmEvidence, type EvidencePolicy } from './enrollment.ts';
export * as protocol from './protocol.ts';
export {
  bootPolicySchema,
  validateBootPolicy,
  parseBootPolicyYaml,
  formatBootPolicyYaml,
  createBootPolicy,
  pcrsPolicyReads,
  type BootPolicy,
  type CreateBootPolicyOptions,
} from './boot-policy.ts';
export {
  appraiseBootEvidence,
  checkLogAgainstPolicy,
  reasonCodes,
  REASON_CODES,
  type ReasonCode,
  type Reason,
  type Verdict,
  type BootEvidence,
  type AppraisalInput,
} from './appraise.ts';
export { LogAnalysisCache, type LogAnalysis, type LogAnalysisCacheOptions } from './log-analysis-cache.ts';
export {
  checkQuoteClock,
  quoteClockOf,
  type QuoteClock,
  type ClockCheck,
  type ClockReasonCode,
  type VerdictEvent,
} from './quote-clock.ts';
