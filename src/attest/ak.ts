/**
 * What makes an attestation key trustworthy (TCG TPM 2.0 Library Part 1, 25 "Attestation" and
 * TCG EK Credential Profile, AK guidance): it must be a restricted signing key (so it signs only
 * TPM-generated structures, whose TPM_GENERATED magic outside data cannot forge), generated inside
 * the TPM (sensitiveDataOrigin) and unable to leave it (fixedTPM, fixedParent), with a strong key.
 * Binding keys certified by the AK must be TPM-resident too.
 */
import { EdgeguardError } from '../errors/index.ts';
import {
  ECC_CURVES,
  HASH_ALGS,
  TPM_ALG,
  hasAttributes,
  type ObjectAttributeName,
  type TpmPublic,
} from '../tpm/index.ts';

const AK_REQUIRED: ObjectAttributeName[] = ['fixedTPM', 'fixedParent', 'sensitiveDataOrigin', 'restricted', 'sign'];
const RESIDENT_REQUIRED: ObjectAttributeName[] = ['fixedTPM', 'fixedParent', 'sensitiveDataOrigin'];
export const MIN_RSA_BITS = 2048;

function checkKeyStrength(pub: TpmPublic, what: string): void {
  const p = pub.params;
  if (p.type === 'rsa') {
    if (p.keyBits < MIN_RSA_BITS)
      throw new EdgeguardError(
        'EG_ENROLL',
        `the ${what} is RSA-${p.keyBits}; at least RSA-${MIN_RSA_BITS} is required.`,
      );
  } else if (p.type === 'ecc') {
    if (ECC_CURVES[p.curveId] === undefined)
      throw new EdgeguardError(
        'EG_ENROLL',
        `the ${what} uses an ECC curve (0x${p.curveId.toString(16)}) other than P-256, P-384 or P-521.`,
      );
  } else {
    throw new EdgeguardError('EG_ENROLL', `the ${what} is not an asymmetric key.`);
  }
  if (pub.nameAlg === TPM_ALG.SHA1 || HASH_ALGS[pub.nameAlg] === undefined)
    throw new EdgeguardError('EG_ENROLL', `the ${what}'s name algorithm must be SHA-256 or stronger.`);
}

/** Refuse an AK that is not a TPM-resident restricted signing key of adequate strength. */
export function checkAttestationKey(ak: TpmPublic): void {
  const missing = AK_REQUIRED.filter((a) => !hasAttributes(ak, a));
  if (missing.length > 0) {
    throw new EdgeguardError(
      'EG_ENROLL',
      `the attestation key lacks ${missing.join(', ')}; only a TPM-resident restricted signing key proves anything. Recreate it with tpm2_createak.`,
      { details: { missing } },
    );
  }
  if (hasAttributes(ak, 'decrypt'))
    throw new EdgeguardError('EG_ENROLL', 'the attestation key is also a decryption key; an AK must only sign.');
  checkKeyStrength(ak, 'attestation key');
}

/** Refuse a binding key that could have been imported or could be duplicated out of the TPM. */
export function checkResidentKey(key: TpmPublic, what = 'binding key'): void {
  const missing = RESIDENT_REQUIRED.filter((a) => !hasAttributes(key, a));
  if (missing.length > 0)
    throw new EdgeguardError('EG_ENROLL', `the ${what} lacks ${missing.join(', ')}; it is not bound to this TPM.`, {
      details: { missing },
    });
  checkKeyStrength(key, what);
}
