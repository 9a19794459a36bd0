/**
 * The TPM key store: the binding key's private half exists in the clear only inside the TPM. On
 * disk it is a TPM2B_PRIVATE encrypted under this TPM's storage root key, so a copy of the device
 * directory is useless on another TPM (tpm2_load fails its integrity check), and the key can only
 * be used through a PolicyPCR session, so it is refused when the boot state changed, unless the
 * key's policy also takes PCR values the operator signed (`authorized`, pcr-authorizations.ts).
 * The same class holds the device identity key (`none`): no PCR policy, for what the device needs
 * to report whatever it booted (the TLS client key).
 */
import type { KeyObject } from 'node:crypto';
import { join } from 'node:path';
import type { ContentKey } from '../crypto/index.ts';
import { EdgeguardError, isEdgeguardError } from '../errors/index.ts';
import {
  TpmClient,
  formatPcrSelection,
  objectName,
  parseTpm2bPublic,
  tpmPublicKey,
  policySignerPublic,
  type KeyPolicy,
  type PcrSelection,
  type TpmKeyBlobs,
} from '../tpm/index.ts';
import { PCR_AUTHORIZATIONS_DIR, choosePolicyBranch, loadPcrAuthorizations } from './pcr-authorizations.ts';
import { TPM_IDENTITY_POSTURE_LABEL, TPM_POSTURE_LABEL, type KeyStore, type KeyStorePosture } from './types.ts';
import { bindingKeyThumbprint } from './wrapped-key.ts';
import { UnwrappedKeys, unwrapChecked } from './unwrap.ts';

/** How the store's key may be used (device.json `tpm.policyKind`; absent: `pcr`). */
export type TpmKeyStorePolicy =
  | { kind: 'pcr' }
  | {
      kind: 'authorized';
      /** The operator's PCR policy signing key (public). */
      signerKey: KeyObject;
      /** The provisioned PolicyPCR branch (device.json `tpm.pcrPolicyDigest`). */
      provisionedPolicy: Buffer;
      /** The device directory: authorizations are read from its pcr-authorizations/ at each unwrap. */
      deviceDir: string;
    }
  | { kind: 'none' };

export class TpmKeyStore implements KeyStore {
  readonly provider = 'tpm' as const;
  readonly posture: KeyStorePosture;
  readonly bindingPublicKey: KeyObject;
  readonly client: TpmClient;

  constructor(
    tcti: string,
    readonly binding: TpmKeyBlobs,
    readonly pcrs: PcrSelection,
    /** The SRK name pinned at provisioning (device.json); checked before every use. */
    srkName?: Uint8Array,
    readonly policy: TpmKeyStorePolicy = { kind: 'pcr' },
  ) {
    this.client = new TpmClient({ tcti, ...(srkName ? { srkName } : {}) });
    const pub = parseTpm2bPublic(binding.public);
    this.bindingPublicKey = tpmPublicKey(pub);
    const sel = formatPcrSelection(pcrs);
    this.posture = {
      provider: 'tpm',
      hardwareBound: true,
      label: policy.kind === 'none' ? TPM_IDENTITY_POSTURE_LABEL : `${TPM_POSTURE_LABEL} ${sel}`,
      bindingKey: bindingKeyThumbprint(this.bindingPublicKey),
      tpm: { tcti, pcrs: sel, bindingName: objectName(pub).toString('hex') },
    };
  }

  private readonly unwrapped = new UnwrappedKeys();

  async unwrapContentKey(wrappedFileText: string): Promise<ContentKey> {
    this.unwrapped.assertUsable();
    const key = await unwrapChecked(wrappedFileText, this.posture.bindingKey, async (ct) => {
      try {
        return await this.client.rsaDecrypt(this.binding, await this.keyPolicy(), ct);
      } catch (e) {
        // TPM_RC_VALUE from RSA_Decrypt: the OAEP padding did not check out.
        if (isEdgeguardError(e, 'EG_TPM') && /TPM_RC_VALUE|TPM_RC_SIZE/.test(String(e.details?.tpmRcName))) {
          throw new EdgeguardError(
            'EG_TAMPERED',
            "the wrapped key does not decrypt with this device's binding key; the file was altered.",
            { cause: e },
          );
        }
        throw e;
      }
    });
    return this.unwrapped.track(key);
  }

  /** The session the next use needs: for `authorized`, the branch the current PCRs satisfy. */
  async keyPolicy(): Promise<KeyPolicy> {
    const p = this.policy;
    if (p.kind === 'none') return { kind: 'none' };
    if (p.kind === 'pcr') return { kind: 'pcr', pcrs: this.pcrs };
    const auths = await loadPcrAuthorizations(join(p.deviceDir, PCR_AUTHORIZATIONS_DIR), p.signerKey);
    const branch = await choosePolicyBranch(this.client, this.pcrs, p.provisionedPolicy, auths);
    if (branch.branch === 'none')
      throw new EdgeguardError(
        'EG_TPM_POLICY',
        `the PCRs ${formatPcrSelection(this.pcrs)} are not the provisioned values and none of the ${auths.valid.length} PCR authorization(s) in ${join(p.deviceDir, PCR_AUTHORIZATIONS_DIR)} approves them: the boot state changed without the operator's authorization. See \`edgeguard device status\`; if the change is expected, have the operator sign the new values (edgeguard attest authorize-pcrs) and copy the file there.`,
        { details: { rejectedAuthorizations: auths.rejected.length } },
      );
    const signer = policySignerPublic(p.signerKey);
    return {
      kind: 'authorized',
      pcrs: this.pcrs,
      provisionedPolicy: p.provisionedPolicy,
      signer,
      ...(branch.branch === 'authorized' ? { authorization: branch.authorization } : {}),
    };
  }

  wipe(): void {
    this.unwrapped.wipeAll();
  }
}
