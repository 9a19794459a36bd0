/**
 * Policy digests a verifier or an operator computes without a TPM, for the binding key's
 * authorized PCR policy (TCG TPM 2.0 Library Part 3, 23 "Enhanced Authorization"):
 *
 *   authPolicy = PolicyOR( PolicyPCR(provisioned PCRs), PolicyAuthorize(signer name, policyRef) )
 *
 * - PolicyAuthorize (23.16): policyDigest' = H(H(0 || TPM_CC_PolicyAuthorize || keySign.name) || policyRef).
 *   In a real session the TPM first checks that the session's digest equals `approvedPolicy` and
 *   that a TPMT_TK_VERIFIED ticket (from TPM2_VerifySignature, keySign in a non-NULL hierarchy)
 *   covers aHash = H_nameAlg(keySign)(approvedPolicy || policyRef).
 * - PolicyOR (23.6): policyDigest' = H(0 || TPM_CC_PolicyOR || digest_1 || ... || digest_n), 2 <= n <= 8.
 *
 * The signer is the operator's "PCR policy signing key", RSA-2048 with RSASSA-PKCS1-v1_5 SHA-256;
 * the TPM sees it as the TPMT_PUBLIC below (loaded with TPM2_LoadExternal in the owner hierarchy),
 * so its name, and every digest above, is fixed by the public key alone.
 */
import { createHash, type KeyObject } from 'node:crypto';
import { EdgeguardError } from '../errors/index.ts';
import { TPM_ALG, TPMA_OBJECT } from './constants.ts';
import { objectName, parseTpm2bPublic, type TpmPublic } from './public.ts';
import { TpmWriter } from './reader.ts';

export const TPM_CC_POLICY_AUTHORIZE = 0x0000016a;
export const TPM_CC_POLICY_OR = 0x00000171;

/**
 * The policyRef every edgeguard authorization is signed over: a signature made for another purpose
 * with the same key (another policyRef) does not satisfy a binding key's policy.
 */
export const PCR_POLICY_REF = Buffer.from('edgeguard-pcr-policy/1', 'ascii');

const ZERO = Buffer.alloc(32);

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

/** TPM2_PolicyAuthorize's effect on a fresh (SHA-256) session: the digest a key's authPolicy names. */
export function policyAuthorizeDigest(signerName: Uint8Array, policyRef: Uint8Array = PCR_POLICY_REF): Buffer {
  const first = createHash('sha256').update(ZERO).update(u32(TPM_CC_POLICY_AUTHORIZE)).update(signerName).digest();
  return createHash('sha256').update(first).update(policyRef).digest();
}

/** TPM2_PolicyOR of 2 to 8 SHA-256 branch digests. */
export function policyOrDigest(branches: Uint8Array[]): Buffer {
  if (branches.length < 2 || branches.length > 8 || branches.some((b) => b.length !== 32))
    throw new EdgeguardError('EG_TPM_POLICY', 'a PolicyOR takes 2 to 8 SHA-256 policy digests.');
  const h = createHash('sha256').update(ZERO).update(u32(TPM_CC_POLICY_OR));
  for (const b of branches) h.update(b);
  return h.digest();
}

/** The message the policy signing key signs (and TPM2_VerifySignature hashes): approvedPolicy || policyRef. */
export function authorizationMessage(approvedPolicy: Uint8Array, policyRef: Uint8Array = PCR_POLICY_REF): Buffer {
  return Buffer.concat([approvedPolicy, policyRef]);
}

export interface PolicySigner {
  /** TPM2B_PUBLIC as TPM2_LoadExternal reads it (tpm2-tools "tss" format). */
  public: Buffer;
  publicArea: TpmPublic;
  /** nameAlg (SHA-256) || SHA-256(TPMT_PUBLIC): what PolicyAuthorize binds to. */
  name: Buffer;
}

/**
 * The PCR policy signing key as a TPM object: TPMT_PUBLIC { type RSA, nameAlg SHA-256,
 * objectAttributes sign|userWithAuth, authPolicy empty, symmetric NULL, scheme RSASSA-SHA256,
 * keyBits 2048, exponent 0 (= 65537) or the key's own, unique = modulus } (Part 2, 12.2.4).
 */
export function policySignerPublic(key: KeyObject): PolicySigner {
  if (key.asymmetricKeyType !== 'rsa' || key.asymmetricKeyDetails?.modulusLength !== 2048)
    throw new EdgeguardError(
      'EG_KEY_FORMAT',
      'a PCR policy signing key must be RSA-2048; make one with `edgeguard attest policy-key create`.',
    );
  const jwk = key.export({ format: 'jwk' });
  const n = Buffer.from(jwk.n!, 'base64url');
  const eBytes = Buffer.from(jwk.e!, 'base64url');
  const e = eBytes.reduce((acc, b) => acc * 256 + b, 0);
  const w = new TpmWriter()
    .u16(TPM_ALG.RSA)
    .u16(TPM_ALG.SHA256)
    .u32(TPMA_OBJECT.sign | TPMA_OBJECT.userWithAuth)
    .tpm2b(Buffer.alloc(0))
    .u16(TPM_ALG.NULL)
    .u16(TPM_ALG.RSASSA)
    .u16(TPM_ALG.SHA256)
    .u16(2048)
    .u32(e === 65537 ? 0 : e)
    .tpm2b(n);
  const pub = new TpmWriter().tpm2b(w.toBuffer()).toBuffer();
  const publicArea = parseTpm2bPublic(pub);
  return { public: pub, publicArea, name: objectName(publicArea) };
}
