/** The key store: where a device's binding private key lives and how content keys are unwrapped. */
import type { KeyObject } from 'node:crypto';
import type { ContentKey } from '../crypto/index.ts';

export type KeyStoreProvider = 'tpm' | 'software';

/** Every report of key posture (CLI, checklist, server) uses these exact labels. */
export const SOFTWARE_POSTURE_LABEL = 'software key: not hardware-bound';
export const TPM_POSTURE_LABEL = 'TPM 2.0 key: hardware-bound, PCR policy';
/** The device identity key (TLS client key wrapping): bound to the TPM, usable whatever was booted. */
export const TPM_IDENTITY_POSTURE_LABEL = 'TPM 2.0 identity key: hardware-bound, no PCR policy';

export interface KeyStorePosture {
  provider: KeyStoreProvider;
  hardwareBound: boolean;
  /** SOFTWARE_POSTURE_LABEL, or the TPM label with its PCR selection. */
  label: string;
  /** RFC 7638 thumbprint of the binding public key. */
  bindingKey: string;
  tpm?: { tcti: string; pcrs: string; bindingName: string };
}

export interface KeyStore {
  readonly provider: KeyStoreProvider;
  readonly posture: KeyStorePosture;
  readonly bindingPublicKey: KeyObject;
  /**
   * Unwrap a wrapped key file's text (see wrapped-key.ts) into a content key, checking that it was
   * wrapped to this device and that the bytes match the file's kid. The caller wipes `bytes`.
   */
  unwrapContentKey(wrappedFileText: string): Promise<ContentKey>;
  /**
   * Zero every content key this store has unwrapped and not yet seen wiped (the buffers callers
   * hold read as zeros from then on) and refuse every later unwrap with EG_LOCKED: the key
   * wipe of the tamper response.
   */
  wipe(): void;
}
