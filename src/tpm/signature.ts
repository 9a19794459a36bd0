/**
 * TPMT_SIGNATURE (TCG TPM 2.0 Library Part 2, 11.3.4) and verification of a TPM-signed
 * attestation: the signature covers H_sigHash(TPMS_ATTEST bytes) (Part 3, 18.2 "Attestation
 * Commands"). RSASSA-PKCS1-v1_5, RSA-PSS and ECDSA are supported.
 */
import { constants, verify as nodeVerify, type KeyObject } from 'node:crypto';
import { EdgeguardError } from '../errors/index.ts';
import { ECC_CURVES, HASH_ALGS, TPM_ALG } from './constants.ts';
import { TpmReader, structureError } from './reader.ts';
import { parseTpmsAttest, type TpmsAttest } from './attest.ts';
import { objectName, tpmPublicKey, hasAttributes, type TpmPublic } from './public.ts';
import { pcrCompositeDigest, type PcrSelection, type PcrValues } from './pcr.ts';

const MAX_RSA_SIG = 512;
const MAX_ECC_PARAM = 128;

export type TpmSignature =
  | { sigAlg: typeof TPM_ALG.RSASSA | typeof TPM_ALG.RSAPSS; hashAlg: number; sig: Buffer }
  | { sigAlg: typeof TPM_ALG.ECDSA; hashAlg: number; r: Buffer; s: Buffer };

export function parseTpmtSignature(bytes: Uint8Array): TpmSignature {
  const rd = new TpmReader(bytes, 'TPMT_SIGNATURE');
  const sigAlg = rd.u16('sigAlg');
  let out: TpmSignature;
  if (sigAlg === TPM_ALG.RSASSA || sigAlg === TPM_ALG.RSAPSS) {
    const hashAlg = rd.u16('signature.hash');
    out = { sigAlg, hashAlg, sig: rd.tpm2b('signature.sig', MAX_RSA_SIG) };
  } else if (sigAlg === TPM_ALG.ECDSA) {
    const hashAlg = rd.u16('signature.hash');
    out = {
      sigAlg,
      hashAlg,
      r: rd.tpm2b('signature.signatureR', MAX_ECC_PARAM),
      s: rd.tpm2b('signature.signatureS', MAX_ECC_PARAM),
    };
  } else {
    throw structureError(
      'TPMT_SIGNATURE',
      `signature algorithm 0x${sigAlg.toString(16)} is not supported (RSASSA, RSAPSS, ECDSA)`,
    );
  }
  rd.end();
  if (!HASH_ALGS[out.hashAlg])
    throw structureError('TPMT_SIGNATURE', `hash algorithm 0x${out.hashAlg.toString(16)} is not supported`);
  return out;
}

function fixed(b: Buffer, size: number): Buffer | undefined {
  if (b.length > size) {
    // Leading zeros beyond the field size are tolerated; anything else is not a valid scalar.
    const extra = b.subarray(0, b.length - size);
    if (extra.some((x) => x !== 0)) return undefined;
    return b.subarray(b.length - size);
  }
  return Buffer.concat([Buffer.alloc(size - b.length), b]);
}

/**
 * Verify `sig` over `message` (the raw TPMS_ATTEST bytes) with the signer's public area.
 * Returns false on a wrong signature; throws EG_TPM_STRUCTURE when the key and signature do not fit
 * together (an RSA signature from an ECC key, an unknown curve).
 */
export function verifyTpmSignature(signer: TpmPublic, message: Uint8Array, sig: TpmSignature): boolean {
  const key: KeyObject = tpmPublicKey(signer);
  const hash = HASH_ALGS[sig.hashAlg]!.node;
  if (sig.sigAlg === TPM_ALG.ECDSA) {
    if (signer.params.type !== 'ecc')
      throw structureError('TPMT_SIGNATURE', 'an ECDSA signature cannot come from an RSA key');
    const size = ECC_CURVES[signer.params.curveId]!.size;
    const r = fixed(sig.r, size);
    const s = fixed(sig.s, size);
    if (!r || !s) return false;
    return nodeVerify(hash, message, { key, dsaEncoding: 'ieee-p1363' }, Buffer.concat([r, s]));
  }
  if (signer.params.type !== 'rsa')
    throw structureError('TPMT_SIGNATURE', 'an RSA signature cannot come from an ECC key');
  const padding = sig.sigAlg === TPM_ALG.RSAPSS ? constants.RSA_PKCS1_PSS_PADDING : constants.RSA_PKCS1_PADDING;
  try {
    return nodeVerify(hash, message, { key, padding, saltLength: constants.RSA_PSS_SALTLEN_AUTO }, sig.sig);
  } catch {
    return false;
  }
}

export interface VerifiedAttestation {
  attest: TpmsAttest;
  signature: TpmSignature;
}

export interface VerifyAttestationOptions {
  /** Expected TPMS_ATTEST.extraData (the verifier's nonce); unchecked when undefined. */
  extraData?: Uint8Array;
  /** Refuse an AK whose attributes do not make it a TPM-resident restricted signing key (default true). */
  requireRestrictedSigner?: boolean;
}

/**
 * Verify a TPMS_ATTEST and its TPMT_SIGNATURE against the signing key's (AK's) public area:
 * the signature, the AK's attributes (fixedTPM, fixedParent, sensitiveDataOrigin, restricted,
 * sign: Part 1, 25 "Attestation" explains why only a restricted key proves TPM origin) and the
 * nonce. Throws EG_SIGNATURE_INVALID or EG_TPM_STRUCTURE; returns the parsed attestation.
 */
export function verifyAttestation(
  akPublic: TpmPublic,
  attestBytes: Uint8Array,
  signatureBytes: Uint8Array,
  opts: VerifyAttestationOptions = {},
): VerifiedAttestation {
  if (
    (opts.requireRestrictedSigner ?? true) &&
    !hasAttributes(akPublic, 'fixedTPM', 'fixedParent', 'sensitiveDataOrigin', 'restricted', 'sign')
  ) {
    throw new EdgeguardError(
      'EG_SIGNATURE_INVALID',
      'the attestation key is not a TPM-resident restricted signing key (fixedTPM, fixedParent, sensitiveDataOrigin, restricted, sign); its attestations prove nothing.',
    );
  }
  if (akPublic.params.type === 'rsa' && akPublic.params.keyBits < 2048) {
    throw new EdgeguardError(
      'EG_SIGNATURE_INVALID',
      `the attestation key is only ${akPublic.params.keyBits} bits; edgeguard requires RSA-2048 or larger.`,
    );
  }
  const attest = parseTpmsAttest(attestBytes);
  const signature = parseTpmtSignature(signatureBytes);
  if (!verifyTpmSignature(akPublic, attestBytes, signature)) {
    throw new EdgeguardError(
      'EG_SIGNATURE_INVALID',
      'the TPM attestation signature does not verify against the attestation key; the evidence was altered or signed by another key.',
    );
  }
  if (opts.extraData !== undefined && !Buffer.from(opts.extraData).equals(attest.extraData)) {
    throw new EdgeguardError(
      'EG_SIGNATURE_INVALID',
      'the attestation does not carry the expected nonce (extraData); it may be a replay.',
    );
  }
  return { attest, signature };
}

/**
 * TPM2_Certify evidence (Part 3, 18.2): the AK signed a TPMS_CERTIFY_INFO naming `certified`.
 * Checks the signature and that the certified name equals the name computed from `certified`.
 */
export function verifyCertify(
  akPublic: TpmPublic,
  certified: TpmPublic,
  attestBytes: Uint8Array,
  signatureBytes: Uint8Array,
  opts: VerifyAttestationOptions = {},
): VerifiedAttestation {
  const v = verifyAttestation(akPublic, attestBytes, signatureBytes, opts);
  if (v.attest.attested.kind !== 'certify') {
    throw new EdgeguardError('EG_SIGNATURE_INVALID', 'the attestation is not a TPM2_Certify result.');
  }
  if (!v.attest.attested.name.equals(objectName(certified))) {
    throw new EdgeguardError(
      'EG_SIGNATURE_INVALID',
      'the certified object name does not match the key presented with the evidence; the key was swapped.',
    );
  }
  return v;
}

/**
 * TPM2_Quote evidence (Part 3, 18.4): signature, nonce, and pcrDigest equal to the digest of
 * `pcrValues` over the SIGNED pcrSelect (never a selection supplied beside the quote), hashed with
 * the signing scheme's hash.
 */
export function verifyQuote(
  akPublic: TpmPublic,
  attestBytes: Uint8Array,
  signatureBytes: Uint8Array,
  nonce: Uint8Array,
  pcrValues: PcrValues,
): VerifiedAttestation & { pcrSelect: PcrSelection } {
  const v = verifyAttestation(akPublic, attestBytes, signatureBytes, { extraData: nonce });
  if (v.attest.attested.kind !== 'quote')
    throw new EdgeguardError('EG_SIGNATURE_INVALID', 'the attestation is not a TPM2_Quote result.');
  const { pcrSelect, pcrDigest } = v.attest.attested;
  const digest = pcrCompositeDigest(pcrSelect, pcrValues, v.signature.hashAlg);
  if (!digest.equals(pcrDigest)) {
    throw new EdgeguardError(
      'EG_SIGNATURE_INVALID',
      'the quoted PCR digest does not match the PCR values presented; they changed after the quote or were altered. Ask for a new quote.',
    );
  }
  return { ...v, pcrSelect };
}
