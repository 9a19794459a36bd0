/**
 * `binding.certify.json`: the TPM2_Certify evidence that the binding key is resident in the same
 * TPM as the AK (TCG TPM 2.0 Library Part 3, 18.2), with everything a verifier needs to check it in
 * pure TypeScript. The AK itself is trusted only once the control plane has enrolled it
 * (MakeCredential/ActivateCredential against the EK certificate); this file alone proves
 * "the AK says this key lives in its TPM with these attributes and this policy".
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { z } from 'zod';
import { EdgeguardError } from '../errors/index.ts';
import {
  hasAttributes,
  objectName,
  parseTpm2bPublic,
  tpmPublicKey,
  verifyCertify,
  type TpmPublic,
} from '../tpm/index.ts';

export const CERTIFY_EVIDENCE_TYPE = 'edgeguard-binding-certify';

const b64 = z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/);
const hex = z.string().regex(/^[0-9a-f]*$/);

export const CertifyEvidenceSchema = z.strictObject({
  type: z.literal(CERTIFY_EVIDENCE_TYPE),
  version: z.literal(1),
  /** TPM2B_PUBLIC of the binding key, base64. */
  bindingPublic: b64,
  /** Its TPM name (nameAlg || SHA-256(TPMT_PUBLIC)), hex. */
  bindingName: hex,
  /** TPM2B_PUBLIC of the AK, base64. */
  akPublic: b64,
  akName: hex,
  /** TPMS_ATTEST bytes (TPM_ST_ATTEST_CERTIFY) exactly as signed, base64. */
  attest: b64,
  /** TPMT_SIGNATURE, base64. */
  signature: b64,
  /** TPM2B_PUBLIC of the EK, base64. */
  ekPublic: b64,
  /** The EK certificate (DER, base64) read from NV index 0x01c00002, when the TPM has one. */
  ekCertificate: b64.optional(),
});
export type CertifyEvidence = z.infer<typeof CertifyEvidenceSchema>;

export function parseCertifyEvidence(text: string): CertifyEvidence {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new EdgeguardError('EG_FORMAT', 'binding.certify.json is not JSON.');
  }
  const r = CertifyEvidenceSchema.safeParse(v);
  if (!r.success)
    throw new EdgeguardError(
      'EG_FORMAT',
      `binding.certify.json is not valid (${r.error.issues[0]?.path.join('.') || 'root'}: ${r.error.issues[0]?.message}).`,
    );
  return r.data;
}

export interface VerifiedBindingEvidence {
  binding: TpmPublic;
  bindingPublicKey: KeyObject;
  bindingName: string;
  ak: TpmPublic;
  akName: string;
  /** The binding key's authPolicy (PolicyPCR digest), hex, for comparison with expected PCR values. */
  policyDigest: string;
}

/**
 * Verify the evidence: the AK's signature over TPMS_ATTEST, the certified name equal to the name of
 * the binding public area, the binding key's attributes (fixedTPM, fixedParent,
 * sensitiveDataOrigin, decrypt, not userWithAuth, a non-empty policy), and, when given, that
 * binding.pub is the same key and the AK is the one the verifier trusts.
 */
export function verifyCertifyEvidence(
  e: CertifyEvidence,
  opts: { bindingPem?: string; trustedAkPublic?: Uint8Array } = {},
): VerifiedBindingEvidence {
  const ak = parseTpm2bPublic(Buffer.from(e.akPublic, 'base64'));
  if (opts.trustedAkPublic && !Buffer.from(opts.trustedAkPublic).equals(Buffer.from(e.akPublic, 'base64'))) {
    throw new EdgeguardError(
      'EG_SIGNATURE_INVALID',
      'binding.certify.json was signed by an AK other than the enrolled one.',
    );
  }
  const binding = parseTpm2bPublic(Buffer.from(e.bindingPublic, 'base64'));
  verifyCertify(ak, binding, Buffer.from(e.attest, 'base64'), Buffer.from(e.signature, 'base64'));
  const bindingName = objectName(binding).toString('hex');
  if (bindingName !== e.bindingName)
    throw new EdgeguardError(
      'EG_SIGNATURE_INVALID',
      'binding.certify.json names a different binding key than the one it carries.',
    );
  if (objectName(ak).toString('hex') !== e.akName)
    throw new EdgeguardError(
      'EG_SIGNATURE_INVALID',
      'binding.certify.json names a different AK than the one it carries.',
    );
  if (
    !hasAttributes(binding, 'fixedTPM', 'fixedParent', 'sensitiveDataOrigin', 'decrypt') ||
    hasAttributes(binding, 'userWithAuth') ||
    binding.authPolicy.length === 0
  ) {
    throw new EdgeguardError(
      'EG_SIGNATURE_INVALID',
      'the certified binding key is not a non-exportable, TPM-generated decryption key usable only under its policy.',
    );
  }
  const bindingPublicKey = tpmPublicKey(binding);
  if (opts.bindingPem !== undefined) {
    let pem: Buffer;
    try {
      pem = createPublicKey(opts.bindingPem).export({ type: 'spki', format: 'der' });
    } catch (e) {
      throw new EdgeguardError('EG_KEY_FORMAT', 'binding.pub is not a PEM public key.', { cause: e });
    }
    if (!Buffer.from(pem).equals(bindingPublicKey.export({ type: 'spki', format: 'der' }))) {
      throw new EdgeguardError('EG_SIGNATURE_INVALID', 'binding.pub is not the key certified in binding.certify.json.');
    }
  }
  return {
    binding,
    bindingPublicKey,
    bindingName,
    ak,
    akName: e.akName,
    policyDigest: binding.authPolicy.toString('hex'),
  };
}
