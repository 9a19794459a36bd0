/**
 * TPM2B_PUBLIC / TPMT_PUBLIC (TCG TPM 2.0 Library Part 2, 12.2.4 and 12.2.5) into Node KeyObjects,
 * and object names (Part 1, 16 "Names": nameAlg || H_nameAlg(TPMT_PUBLIC)).
 *
 * Supported: RSA (TPMS_RSA_PARMS, 12.2.3.5) and ECC (TPMS_ECC_PARMS, 12.2.3.6) keys, which become
 * KeyObjects; KEYEDHASH and SYMCIPHER objects (sealed data, HMAC keys) parse without a public key
 * so their names can still be computed.
 */
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import {
  ECC_CURVES,
  HASH_ALGS,
  TPM_ALG,
  TPMA_OBJECT,
  decodeObjectAttributes,
  type ObjectAttributeName,
} from './constants.ts';
import { TpmReader, TpmWriter, structureError } from './reader.ts';

/** TPMT_SYM_DEF_OBJECT (12.2.3.? via 11.1.7): algorithm, then keyBits and mode unless NULL. */
export interface SymDef {
  algorithm: number;
  keyBits?: number;
  mode?: number;
}

/** A scheme with its hash (TPMT_RSA_SCHEME, TPMT_ECC_SCHEME, TPMT_KDF_SCHEME...). */
export interface Scheme {
  scheme: number;
  hashAlg?: number;
  count?: number;
}

export type PublicParameters =
  | { type: 'rsa'; symmetric: SymDef; scheme: Scheme; keyBits: number; exponent: number; modulus: Buffer }
  | { type: 'ecc'; symmetric: SymDef; scheme: Scheme; curveId: number; kdf: Scheme; x: Buffer; y: Buffer }
  | { type: 'keyedhash'; scheme: Scheme & { kdf?: number }; unique: Buffer }
  | { type: 'symcipher'; symmetric: SymDef; unique: Buffer };

export interface TpmPublic {
  /** TPMI_ALG_PUBLIC. */
  typeAlg: number;
  nameAlg: number;
  attributes: number;
  attributeNames: ObjectAttributeName[];
  authPolicy: Buffer;
  params: PublicParameters;
  /** The exact TPMT_PUBLIC bytes (what the name hashes). */
  tpmtBytes: Buffer;
}

const MAX_DIGEST = 64;
const MAX_RSA_KEY_BYTES = 512;
const MAX_ECC_KEY_BYTES = 128;

function readSymDef(r: TpmReader, field: string): SymDef {
  const algorithm = r.u16(`${field}.algorithm`);
  if (algorithm === TPM_ALG.NULL) return { algorithm };
  if (algorithm === TPM_ALG.XOR) {
    // TPMU_SYM_KEY_BITS.xor is a hash algorithm; TPMU_SYM_MODE.xor is empty.
    return { algorithm, keyBits: r.u16(`${field}.hash`) };
  }
  if (algorithm !== TPM_ALG.AES && algorithm !== TPM_ALG.SM4 && algorithm !== TPM_ALG.CAMELLIA) {
    throw structureError(r.what, `unknown symmetric algorithm 0x${algorithm.toString(16)} in ${field}`);
  }
  return { algorithm, keyBits: r.u16(`${field}.keyBits`), mode: r.u16(`${field}.mode`) };
}

/** TPMT_RSA_SCHEME / TPMT_ECC_SCHEME / TPMT_SIG_SCHEME / TPMT_KDF_SCHEME: NULL has no details. */
function readScheme(r: TpmReader, field: string): Scheme {
  const scheme = r.u16(`${field}.scheme`);
  if (scheme === TPM_ALG.NULL) return { scheme };
  // TPMS_ENC_SCHEME_RSAES is empty (Part 2, 11.2.2.2); every other scheme starts with a hash alg.
  if (scheme === TPM_ALG.RSAES) return { scheme };
  const known: number[] = [
    TPM_ALG.RSASSA,
    TPM_ALG.RSAPSS,
    TPM_ALG.OAEP,
    TPM_ALG.ECDSA,
    TPM_ALG.ECDH,
    TPM_ALG.ECDAA,
    TPM_ALG.SM2,
    TPM_ALG.ECSCHNORR,
    TPM_ALG.ECMQV,
    TPM_ALG.HMAC,
    TPM_ALG.MGF1,
    TPM_ALG.KDF1_SP800_56A,
    TPM_ALG.KDF2,
    TPM_ALG.KDF1_SP800_108,
  ];
  if (!known.includes(scheme)) throw structureError(r.what, `unknown scheme 0x${scheme.toString(16)} in ${field}`);
  const hashAlg = r.u16(`${field}.hashAlg`);
  // TPMS_SCHEME_ECDAA carries a commit count after the hash.
  if (scheme === TPM_ALG.ECDAA) return { scheme, hashAlg, count: r.u16(`${field}.count`) };
  return { scheme, hashAlg };
}

function readTpmtPublic(r: TpmReader): TpmPublic {
  const start = r.position;
  const typeAlg = r.u16('type');
  const nameAlg = r.u16('nameAlg');
  const attributes = r.u32('objectAttributes');
  const authPolicy = r.tpm2b('authPolicy', MAX_DIGEST);
  let params: PublicParameters;
  switch (typeAlg) {
    case TPM_ALG.RSA: {
      const symmetric = readSymDef(r, 'rsaDetail.symmetric');
      const scheme = readScheme(r, 'rsaDetail.scheme');
      const keyBits = r.u16('rsaDetail.keyBits');
      const exponent = r.u32('rsaDetail.exponent');
      const modulus = r.tpm2b('unique.rsa', MAX_RSA_KEY_BYTES);
      params = { type: 'rsa', symmetric, scheme, keyBits, exponent, modulus };
      break;
    }
    case TPM_ALG.ECC: {
      const symmetric = readSymDef(r, 'eccDetail.symmetric');
      const scheme = readScheme(r, 'eccDetail.scheme');
      const curveId = r.u16('eccDetail.curveID');
      const kdf = readScheme(r, 'eccDetail.kdf');
      const x = r.tpm2b('unique.ecc.x', MAX_ECC_KEY_BYTES);
      const y = r.tpm2b('unique.ecc.y', MAX_ECC_KEY_BYTES);
      params = { type: 'ecc', symmetric, scheme, curveId, kdf, x, y };
      break;
    }
    case TPM_ALG.KEYEDHASH: {
      // TPMT_KEYEDHASH_SCHEME: HMAC carries a hash; XOR carries a hash and a KDF.
      const scheme = r.u16('keyedHashDetail.scheme');
      let s: Scheme & { kdf?: number };
      if (scheme === TPM_ALG.NULL) s = { scheme };
      else if (scheme === TPM_ALG.HMAC) s = { scheme, hashAlg: r.u16('keyedHashDetail.hashAlg') };
      else if (scheme === TPM_ALG.XOR)
        s = { scheme, hashAlg: r.u16('keyedHashDetail.hashAlg'), kdf: r.u16('keyedHashDetail.kdf') };
      else throw structureError(r.what, `unknown keyed-hash scheme 0x${scheme.toString(16)}`);
      params = { type: 'keyedhash', scheme: s, unique: r.tpm2b('unique.keyedHash', MAX_DIGEST) };
      break;
    }
    case TPM_ALG.SYMCIPHER: {
      const symmetric = readSymDef(r, 'symDetail.sym');
      params = { type: 'symcipher', symmetric, unique: r.tpm2b('unique.sym', MAX_DIGEST) };
      break;
    }
    default:
      throw structureError(r.what, `unknown object type 0x${typeAlg.toString(16)}`);
  }
  return {
    typeAlg,
    nameAlg,
    attributes,
    attributeNames: decodeObjectAttributes(attributes),
    authPolicy,
    params,
    tpmtBytes: r.slice(start),
  };
}

/** Parse a bare TPMT_PUBLIC (as inside TPM2B_PUBLIC, or as tpm2-tools writes with `-f tpmt`). */
export function parseTpmtPublic(bytes: Uint8Array): TpmPublic {
  const r = new TpmReader(bytes, 'TPMT_PUBLIC');
  const pub = readTpmtPublic(r);
  r.end();
  return pub;
}

/** Parse a TPM2B_PUBLIC (u16 size, then TPMT_PUBLIC of exactly that size), as tpm2_create -u writes. */
export function parseTpm2bPublic(bytes: Uint8Array): TpmPublic {
  const outer = new TpmReader(bytes, 'TPM2B_PUBLIC');
  const inner = outer.tpm2b('publicArea');
  outer.end();
  if (inner.length === 0) throw structureError('TPM2B_PUBLIC', 'empty publicArea');
  return parseTpmtPublic(inner);
}

export function marshalTpm2bPublic(pub: TpmPublic): Buffer {
  return new TpmWriter().tpm2b(pub.tpmtBytes).toBuffer();
}

/** Object name (Part 1, 16): u16 nameAlg || H_nameAlg(TPMT_PUBLIC). */
export function objectName(pub: TpmPublic): Buffer {
  const h = HASH_ALGS[pub.nameAlg];
  if (!h) throw structureError('TPMT_PUBLIC', `name algorithm 0x${pub.nameAlg.toString(16)} is not supported`);
  const alg = Buffer.alloc(2);
  alg.writeUInt16BE(pub.nameAlg);
  return Buffer.concat([alg, createHash(h.node).update(pub.tpmtBytes).digest()]);
}

function leftPad(b: Buffer, size: number, field: string): Buffer {
  if (b.length > size)
    throw structureError('TPMT_PUBLIC', `${field} is ${b.length} bytes, longer than the curve's ${size}`);
  return b.length === size ? b : Buffer.concat([Buffer.alloc(size - b.length), b]);
}

/** The Node KeyObject for an RSA or ECC TPM public area. */
export function tpmPublicKey(pub: TpmPublic): KeyObject {
  // A parsed public area does not change: its key is made once (a verifier checks the same AK's
  // signatures again and again; making the key is most of a signature check's cost).
  let key = keyObjects.get(pub);
  if (key === undefined) keyObjects.set(pub, (key = makePublicKey(pub)));
  return key;
}

const keyObjects = new WeakMap<TpmPublic, KeyObject>();

function makePublicKey(pub: TpmPublic): KeyObject {
  const p = pub.params;
  try {
    if (p.type === 'rsa') {
      if (p.modulus.length * 8 !== p.keyBits)
        throw structureError('TPMT_PUBLIC', `modulus is ${p.modulus.length * 8} bits but keyBits says ${p.keyBits}`);
      if (p.modulus.length === 0 || (p.modulus[0]! & 0x80) === 0)
        throw structureError('TPMT_PUBLIC', 'RSA modulus does not have its top bit set');
      // Part 2, 12.2.3.5: an exponent of zero means the default 2^16 + 1.
      const e = p.exponent === 0 ? 65537 : p.exponent;
      if (e < 3 || e % 2 === 0) throw structureError('TPMT_PUBLIC', `RSA exponent ${e} is not valid`);
      const eBytes = Buffer.alloc(4);
      eBytes.writeUInt32BE(e);
      let i = 0;
      while (i < 3 && eBytes[i] === 0) i++;
      return createPublicKey({
        key: { kty: 'RSA', n: p.modulus.toString('base64url'), e: eBytes.subarray(i).toString('base64url') },
        format: 'jwk',
      });
    }
    if (p.type === 'ecc') {
      const curve = ECC_CURVES[p.curveId];
      if (!curve) throw structureError('TPMT_PUBLIC', `ECC curve 0x${p.curveId.toString(16)} is not supported`);
      const x = leftPad(p.x, curve.size, 'x');
      const y = leftPad(p.y, curve.size, 'y');
      return createPublicKey({
        key: { kty: 'EC', crv: curve.jwk, x: x.toString('base64url'), y: y.toString('base64url') },
        format: 'jwk',
      });
    }
  } catch (e) {
    if (e instanceof Error && e.name === 'EdgeguardError') throw e;
    // OpenSSL rejects points off the curve and degenerate moduli.
    throw structureError(
      'TPMT_PUBLIC',
      `the public key is not a valid ${p.type.toUpperCase()} key: ${(e as Error).message}`,
    );
  }
  throw structureError('TPMT_PUBLIC', `a ${p.type} object has no asymmetric public key`);
}

/** True when every named attribute is set. */
export function hasAttributes(pub: TpmPublic, ...names: ObjectAttributeName[]): boolean {
  return names.every((n) => (pub.attributes & TPMA_OBJECT[n]) !== 0);
}
