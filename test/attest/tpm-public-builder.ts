/** Build TPM2B_PUBLIC areas around software keys, for verifier tests that need odd attributes. */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { TpmWriter, parseTpm2bPublic, type TpmPublic } from '../../src/tpm/index.ts';

export const ATTR = {
  fixedTPM: 1 << 1,
  fixedParent: 1 << 4,
  sensitiveDataOrigin: 1 << 5,
  userWithAuth: 1 << 6,
  adminWithPolicy: 1 << 7,
  restricted: 1 << 16,
  decrypt: 1 << 17,
  sign: 1 << 18,
};
export const EK_ATTRS =
  ATTR.fixedTPM | ATTR.fixedParent | ATTR.sensitiveDataOrigin | ATTR.adminWithPolicy | ATTR.restricted | ATTR.decrypt;
export const AK_ATTRS =
  ATTR.fixedTPM | ATTR.fixedParent | ATTR.sensitiveDataOrigin | ATTR.userWithAuth | ATTR.restricted | ATTR.sign;

export function rsaPublic(opts: {
  attributes: number;
  bits?: number;
  nameAlg?: number;
  sign?: boolean;
  key?: KeyObject;
}): { pub: TpmPublic; tpm2b: Buffer; publicKey: KeyObject; privateKey?: KeyObject } {
  const bits = opts.bits ?? 2048;
  const pair = opts.key
    ? { publicKey: opts.key, privateKey: undefined }
    : generateKeyPairSync('rsa', { modulusLength: bits });
  const n = Buffer.from(pair.publicKey.export({ format: 'jwk' }).n!, 'base64url');
  const w = new TpmWriter()
    .u16(0x0001)
    .u16(opts.nameAlg ?? 0x000b)
    .u32(opts.attributes)
    .tpm2b(Buffer.alloc(0));
  if (opts.sign)
    w.u16(0x0010).u16(0x0014).u16(0x000b); // symmetric NULL, scheme RSASSA-SHA256
  else w.u16(0x0006).u16(128).u16(0x0043).u16(0x0010); // AES-128-CFB, scheme NULL
  const tpmt = w
    .u16(n.length * 8)
    .u32(0)
    .tpm2b(n)
    .toBuffer();
  const tpm2b = new TpmWriter().tpm2b(tpmt).toBuffer();
  return {
    pub: parseTpm2bPublic(tpm2b),
    tpm2b,
    publicKey: pair.publicKey,
    ...(pair.privateKey ? { privateKey: pair.privateKey } : {}),
  };
}
