/**
 * TPM 2.0 constants used by edgeguard (TCG TPM 2.0 Library Part 2: 6.3 TPM_ALG_ID, 6.4 TPM_ECC_CURVE,
 * 6.9 TPM_ST, 6.2 TPM_GENERATED, 8.3 TPMA_OBJECT, 6.5.2 TPM_CC).
 */

export const TPM_GENERATED_VALUE = 0xff544347;

export const TPM_ALG = {
  RSA: 0x0001,
  SHA1: 0x0004,
  HMAC: 0x0005,
  AES: 0x0006,
  MGF1: 0x0007,
  KEYEDHASH: 0x0008,
  XOR: 0x000a,
  SHA256: 0x000b,
  SHA384: 0x000c,
  SHA512: 0x000d,
  NULL: 0x0010,
  SM3_256: 0x0012,
  SM4: 0x0013,
  RSASSA: 0x0014,
  RSAES: 0x0015,
  RSAPSS: 0x0016,
  OAEP: 0x0017,
  ECDSA: 0x0018,
  ECDH: 0x0019,
  ECDAA: 0x001a,
  SM2: 0x001b,
  ECSCHNORR: 0x001c,
  ECMQV: 0x001d,
  KDF1_SP800_56A: 0x0020,
  KDF2: 0x0021,
  KDF1_SP800_108: 0x0022,
  ECC: 0x0023,
  SYMCIPHER: 0x0025,
  CAMELLIA: 0x0026,
  CTR: 0x0040,
  OFB: 0x0041,
  CBC: 0x0042,
  CFB: 0x0043,
  ECB: 0x0044,
} as const;

/** Hash algorithms we can compute, with Node's name and digest size. */
export const HASH_ALGS: Record<number, { name: string; node: string; size: number }> = {
  [TPM_ALG.SHA1]: { name: 'sha1', node: 'sha1', size: 20 },
  [TPM_ALG.SHA256]: { name: 'sha256', node: 'sha256', size: 32 },
  [TPM_ALG.SHA384]: { name: 'sha384', node: 'sha384', size: 48 },
  [TPM_ALG.SHA512]: { name: 'sha512', node: 'sha512', size: 64 },
};

export function hashAlgByName(name: string): number | undefined {
  for (const [id, h] of Object.entries(HASH_ALGS)) if (h.name === name) return Number(id);
  return undefined;
}

/** TPM_ECC_CURVE values with the JWK curve name and coordinate size in bytes. */
export const ECC_CURVES: Record<number, { jwk: string; size: number }> = {
  0x0003: { jwk: 'P-256', size: 32 },
  0x0004: { jwk: 'P-384', size: 48 },
  0x0005: { jwk: 'P-521', size: 66 },
};

export const TPM_ST = {
  ATTEST_CERTIFY: 0x8017,
  ATTEST_QUOTE: 0x8018,
  ATTEST_SESSION_AUDIT: 0x8019,
  ATTEST_COMMAND_AUDIT: 0x8015,
  ATTEST_TIME: 0x8016,
  ATTEST_CREATION: 0x801a,
  ATTEST_NV: 0x8014,
} as const;

/** TPMA_OBJECT bits (Part 2, 8.3.2). */
export const TPMA_OBJECT = {
  fixedTPM: 1 << 1,
  stClear: 1 << 2,
  fixedParent: 1 << 4,
  sensitiveDataOrigin: 1 << 5,
  userWithAuth: 1 << 6,
  adminWithPolicy: 1 << 7,
  noDA: 1 << 10,
  encryptedDuplication: 1 << 11,
  restricted: 1 << 16,
  decrypt: 1 << 17,
  sign: 1 << 18,
  x509sign: 1 << 19,
} as const;

export type ObjectAttributeName = keyof typeof TPMA_OBJECT;

export function decodeObjectAttributes(bits: number): ObjectAttributeName[] {
  return (Object.keys(TPMA_OBJECT) as ObjectAttributeName[]).filter((k) => (bits & TPMA_OBJECT[k]) !== 0);
}

export const TPM_CC_POLICY_PCR = 0x0000017f;
