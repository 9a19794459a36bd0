/**
 * Public face of the key store: where a device's binding key lives (TPM or a labelled software
 * file), the wrapped content key format, and the device directory.
 *
 *   const store = await openDeviceKeyStore(dir);
 *   const key = await store.unwrapContentKey(await readFile('model.key.wrapped', 'utf8'));
 */
export {
  type KeyStore,
  type KeyStoreProvider,
  type KeyStorePosture,
  SOFTWARE_POSTURE_LABEL,
  TPM_POSTURE_LABEL,
  TPM_IDENTITY_POSTURE_LABEL,
} from './types.ts';
export {
  type WrappedKeyFile,
  WRAP_ALG,
  WRAPPED_KEY_TYPE,
  wrapContentKey,
  encodeWrappedKeyFile,
  parseWrappedKeyFile,
  bindingKeyThumbprint,
  parseBindingPublicKey,
} from './wrapped-key.ts';
export { SoftwareKeyStore } from './software.ts';
export { TpmKeyStore, type TpmKeyStorePolicy } from './tpm.ts';
export {
  type LoadedAuthorizations,
  type PolicyBranch,
  PCR_AUTHORIZATIONS_DIR,
  loadPcrAuthorizations,
  choosePolicyBranch,
} from './pcr-authorizations.ts';
export {
  type DeviceFile,
  type InitDeviceOptions,
  type InitDeviceResult,
  type OpenDeviceOptions,
  DEVICE_FILE,
  FILES as DEVICE_FILES,
  initDevice,
  openDeviceKeyStore,
  openDeviceIdentityStore,
  readDeviceFile,
  readBindingPolicy,
} from './device.ts';
export {
  type CertifyEvidence,
  type VerifiedBindingEvidence,
  CERTIFY_EVIDENCE_TYPE,
  parseCertifyEvidence,
  verifyCertifyEvidence,
} from './certify-evidence.ts';
export {
  type DeviceKeyStatus,
  type TpmKeyStatus,
  type PcrDifference,
  deviceKeyStatus,
  policyNotSatisfied,
} from './status.ts';
export { type ContentKeyPosture, type ContentKeySource, resolveContentKey } from './content-key.ts';
