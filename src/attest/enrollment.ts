/**
 * The server's check of a device's TPM enrollment evidence, composed from the pieces in this
 * module. Order matters: cheap structural checks first, then the EK chain, the AK policy and the
 * binding key's certification; only evidence that passes all of them earns a credential challenge
 * (MakeCredential), whose answer then proves the AK sits in the TPM that owns the EK.
 */
import { EdgeguardError, isEdgeguardError } from '../errors/index.ts';
import { hasAttributes, objectName, parseTpm2bPublic, verifyCertify, type TpmPublic } from '../tpm/index.ts';
import type { x509 } from '../pki/index.ts';
import { checkAttestationKey, checkResidentKey } from './ak.ts';
import { ekPublicKeyHash, verifyEkCertificate, type EkTrustStore } from './ek.ts';

export interface TpmEvidence {
  ekPublic: Uint8Array;
  ekCertificate?: Uint8Array | undefined;
  ekChain?: Uint8Array[] | undefined;
  akPublic: Uint8Array;
  bindingPublic: Uint8Array;
  certifyInfo: Uint8Array;
  certifySignature: Uint8Array;
}

export interface VerifiedTpmEvidence {
  ek: TpmPublic;
  ekHash: string;
  ekCertificate: x509.X509Certificate | null;
  ak: TpmPublic;
  akName: Buffer;
  binding: TpmPublic;
}

export interface EvidencePolicy {
  trust: EkTrustStore;
  /** Whether an EK without a certificate is acceptable (the server allows it only for pre-registered EK hashes). */
  acceptEkWithoutCertificate(ekHash: string): boolean;
  now?: Date;
}

function parsePublic(bytes: Uint8Array, what: string): TpmPublic {
  try {
    return parseTpm2bPublic(bytes);
  } catch (e) {
    throw new EdgeguardError('EG_ENROLL', `the ${what} is not a valid TPM2B_PUBLIC (${(e as Error).message}).`, {
      cause: e,
    });
  }
}

export async function verifyTpmEvidence(e: TpmEvidence, policy: EvidencePolicy): Promise<VerifiedTpmEvidence> {
  const ek = parsePublic(e.ekPublic, 'EK public area');
  const ak = parsePublic(e.akPublic, 'AK public area');
  const binding = parsePublic(e.bindingPublic, 'binding key public area');

  // An EK is a restricted decryption (storage) key that never leaves the TPM (EK Credential Profile 2.0, 2.1).
  if (!hasAttributes(ek, 'fixedTPM', 'fixedParent', 'restricted', 'decrypt')) {
    throw new EdgeguardError(
      'EG_ENROLL',
      'the EK public area is not a restricted, TPM-fixed decryption key; it is not an endorsement key.',
    );
  }
  let ekHash: string;
  try {
    ekHash = ekPublicKeyHash(ek);
  } catch (err) {
    throw new EdgeguardError('EG_ENROLL', 'the EK public key is not a valid RSA or ECC key.', { cause: err });
  }

  let ekCertificate: x509.X509Certificate | null = null;
  if (e.ekCertificate !== undefined) {
    const v = await verifyEkCertificate(e.ekCertificate, ek, policy.trust, {
      intermediates: e.ekChain ?? [],
      ...(policy.now ? { now: policy.now } : {}),
    });
    ekCertificate = v.certificate;
  } else if (!policy.acceptEkWithoutCertificate(ekHash)) {
    throw new EdgeguardError(
      'EG_ENROLL',
      `no EK certificate was sent and EK ${ekHash} is not pre-registered; send the EK certificate or add the EK hash to the auto-approve list.`,
      { details: { ekHash } },
    );
  }

  checkAttestationKey(ak);
  checkResidentKey(binding);
  try {
    verifyCertify(ak, binding, e.certifyInfo, e.certifySignature, { requireRestrictedSigner: true });
  } catch (err) {
    if (isEdgeguardError(err)) {
      throw new EdgeguardError('EG_ENROLL', `the binding key is not certified by the attestation key: ${err.message}`, {
        cause: err,
      });
    }
    throw err;
  }
  return { ek, ekHash, ekCertificate, ak, akName: objectName(ak), binding };
}
