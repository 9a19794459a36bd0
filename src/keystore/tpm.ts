/**
 * The TPM key store: the binding key's private half exists in the clear only inside the TPM. On
 * disk it is a TPM2B_PRIVATE encrypted under this TPM's storage root key, so a copy of the device
 * directory is useless on another TPM (tpm2_load fails its integrity check), and the key can only
 * be used through a PolicyPCR session, so it is refused when the boot state changed.
 */
import type { KeyObject } from 'node:crypto';
import type { ContentKey } from '../crypto/index.ts';
import { EdgeguardError, isEdgeguardError } from '../errors/index.ts';
import {
  TpmClient,
  formatPcrSelection,
  objectName,
  parseTpm2bPublic,
  tpmPublicKey,
  type PcrSelection,
  type TpmKeyBlobs,
} from '../tpm/index.ts';
import { TPM_POSTURE_LABEL, type KeyStore, type KeyStorePosture } from './types.ts';
import { bindingKeyThumbprint } from './wrapped-key.ts';
import { UnwrappedKeys, unwrapChecked } from './unwrap.ts';

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
  ) {
    this.client = new TpmClient({ tcti, ...(srkName ? { srkName } : {}) });
    const pub = parseTpm2bPublic(binding.public);
    this.bindingPublicKey = tpmPublicKey(pub);
    const sel = formatPcrSelection(pcrs);
    this.posture = {
      provider: 'tpm',
      hardwareBound: true,
      label: `${TPM_POSTURE_LABEL} ${sel}`,
      bindingKey: bindingKeyThumbprint(this.bindingPublicKey),
      tpm: { tcti, pcrs: sel, bindingName: objectName(pub).toString('hex') },
    };
  }

  private readonly unwrapped = new UnwrappedKeys();

  async unwrapContentKey(wrappedFileText: string): Promise<ContentKey> {
    this.unwrapped.assertUsable();
    const key = await unwrapChecked(wrappedFileText, this.posture.bindingKey, async (ct) => {
      try {
        return await this.client.rsaDecrypt(this.binding, this.pcrs, ct);
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

  wipe(): void {
    this.unwrapped.wipeAll();
  }
}
