/**
 * Public face of the TPM module: a TPM 2.0 client over tpm2-tools (client.ts, with its NV index
 * operations in nv-client.ts and its EK, AK, certify, quote and credential activation in
 * attest-client.ts), and TCG structures parsed and verified in pure TypeScript (public.ts,
 * attest.ts, signature.ts, pcr.ts, nv.ts) so that a verifier needs no TPM software at all.
 */
export {
  TPM_ALG,
  TPMA_OBJECT,
  TPM_ST,
  HASH_ALGS,
  ECC_CURVES,
  decodeObjectAttributes,
  type ObjectAttributeName,
} from './constants.ts';
export { TpmReader, TpmWriter } from './reader.ts';
export {
  type TpmPublic,
  type PublicParameters,
  parseTpm2bPublic,
  parseTpmtPublic,
  marshalTpm2bPublic,
  objectName,
  tpmPublicKey,
  hasAttributes,
} from './public.ts';
export { type TpmsAttest, type AttestedInfo, type ClockInfo, parseTpmsAttest, parseTpm2bAttest } from './attest.ts';
export {
  type TpmSignature,
  type VerifiedAttestation,
  type VerifyAttestationOptions,
  parseTpmtSignature,
  verifyTpmSignature,
  verifyAttestation,
  verifyCertify,
  verifyQuote,
} from './signature.ts';
export {
  type PcrSelection,
  type PcrBankSelection,
  type PcrValues,
  DEFAULT_BINDING_PCRS,
  parsePcrSelection,
  formatPcrSelection,
  marshalPcrSelection,
  pcrCompositeDigest,
  policyPcrDigest,
} from './pcr.ts';
export { type DecodedRc, decodeResponseCode } from './response-code.ts';
export {
  TpmClient,
  activateCredential,
  type TpmClientOptions,
  type TpmKeyBlobs,
  type BindingKey,
  SRK_TEMPLATE,
  BINDING_KEY_ALG,
  BINDING_KEY_ATTRIBUTES,
  IDENTITY_KEY_ATTRIBUTES,
} from './client.ts';
export { TpmNv, NV_COUNTER_ATTRIBUTES, type NvAuth, type NvSteps } from './nv-client.ts';
export {
  TpmAttestation,
  EK_CERT_NV_INDEX_RSA,
  type AttestationSteps,
  type EndorsementKeys,
  type Attestation,
} from './attest-client.ts';
export {
  type NvPublic,
  TPMA_NV,
  TPM_NT,
  nvType,
  hasNvAttributes,
  parseTpm2bNvPublic,
  marshalNvPublic,
  nvName,
  nvReadPublicCommand,
  parseNvReadPublicResponse,
} from './nv.ts';
export { type KeyPolicy, type SignedPcrPolicy } from './policy-session.ts';
export {
  type PolicySigner,
  PCR_POLICY_REF,
  policyAuthorizeDigest,
  policyOrDigest,
  policySignerPublic,
  authorizationMessage,
} from './policy.ts';
export {
  type PcrAuthorization,
  type ParsedPcrAuthorization,
  type SignPcrAuthorizationOptions,
  PCR_AUTHORIZATION_TYPE,
  PCR_AUTHORIZATION_MAX_BYTES,
  TAMPER_PCR,
  parsePcrAuthorization,
  signPcrAuthorization,
} from './pcr-authorization.ts';
export {
  startSwtpm,
  createLocalCa,
  missingSwtpmBinaries,
  type Swtpm,
  type SwtpmOptions,
  type LocalCa,
} from './swtpm.ts';
