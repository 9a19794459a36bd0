/**
 * NV index public areas (TCG TPM 2.0 Library Part 2, 13.5 TPMS_NV_PUBLIC, 13.6 TPM2B_NV_PUBLIC,
 * 13.4 TPMA_NV) and their Names (Part 1, 16 "Names": nameAlg || H_nameAlg(TPMS_NV_PUBLIC)), and
 * the raw TPM2_NV_ReadPublic command and response (Part 3, 31.6), which nv-client.ts sends with
 * tpm2_send so that the public area arrives as the TPM's own bytes rather than tool YAML; and the
 * cpHash of a TPM2_NV_Read (Part 3, 31.13), with which nv-client.ts ties a read to a checked Name.
 */
import { createHash } from 'node:crypto';
import { EdgeguardError } from '../errors/index.ts';
import { HASH_ALGS } from './constants.ts';
import { TpmReader, TpmWriter, structureError } from './reader.ts';
import { decodeResponseCode, tpmErrorFor } from './response-code.ts';

/** TPMA_NV bits (Part 2, 13.4); TPM_NT is the 4-bit field at bits 7:4. */
export const TPMA_NV = {
  ppwrite: 0x00000001,
  ownerwrite: 0x00000002,
  authwrite: 0x00000004,
  policywrite: 0x00000008,
  policyDelete: 0x00000400,
  writelocked: 0x00000800,
  writeall: 0x00001000,
  writedefine: 0x00002000,
  writeStclear: 0x00004000,
  globallock: 0x00008000,
  ppread: 0x00010000,
  ownerread: 0x00020000,
  authread: 0x00040000,
  policyread: 0x00080000,
  noDa: 0x02000000,
  orderly: 0x04000000,
  clearStclear: 0x08000000,
  readlocked: 0x10000000,
  written: 0x20000000,
  platformcreate: 0x40000000,
  readStclear: 0x80000000,
} as const;

/** TPM_NT (Part 2, 13.4 Table 215). */
export const TPM_NT = { ordinary: 0x0, counter: 0x1, bits: 0x2, extend: 0x4, pinFail: 0x8, pinPass: 0x9 } as const;

export function nvType(attributes: number): number {
  return (attributes >>> 4) & 0xf;
}

export function hasNvAttributes(attributes: number, bits: number): boolean {
  return (attributes & bits) >>> 0 === bits >>> 0;
}

export interface NvPublic {
  nvIndex: number;
  nameAlg: number;
  attributes: number;
  authPolicy: Buffer;
  dataSize: number;
  /** The exact TPMS_NV_PUBLIC bytes (what the Name hashes). */
  bytes: Buffer;
}

const MAX_DIGEST = 64;
const TPM_ST_NO_SESSIONS = 0x8001;
const TPM_CC_NV_READ_PUBLIC = 0x00000169;
const TPM_CC_NV_READ = 0x0000014e;
/** Handle-1 TPM_RC_HANDLE (0x08B | 0x100): no NV index at that handle. */
const TPM_RC_HANDLE = 0x08b;

function readNvPublic(r: TpmReader): NvPublic {
  const start = r.position;
  const nvIndex = r.u32('nvIndex');
  const nameAlg = r.u16('nameAlg');
  const attributes = r.u32('attributes');
  const authPolicy = r.tpm2b('authPolicy', MAX_DIGEST);
  const dataSize = r.u16('dataSize');
  if (nvIndex >>> 24 !== 0x01) throw structureError(r.what, `0x${nvIndex.toString(16)} is not an NV index handle`);
  return { nvIndex, nameAlg, attributes, authPolicy, dataSize, bytes: r.slice(start) };
}

/** Parse a TPM2B_NV_PUBLIC: u16 size, then a TPMS_NV_PUBLIC of exactly that size. */
export function parseTpm2bNvPublic(bytes: Uint8Array): NvPublic {
  const outer = new TpmReader(bytes, 'TPM2B_NV_PUBLIC');
  const inner = outer.tpm2b('nvPublic');
  outer.end();
  const r = new TpmReader(inner, 'TPMS_NV_PUBLIC');
  const pub = readNvPublic(r);
  r.end();
  return pub;
}

/** Marshal a TPMS_NV_PUBLIC (what a Name is computed over). */
export function marshalNvPublic(p: Omit<NvPublic, 'bytes'>): Buffer {
  return new TpmWriter().u32(p.nvIndex).u16(p.nameAlg).u32(p.attributes).tpm2b(p.authPolicy).u16(p.dataSize).toBuffer();
}

/** The Name of an NV index (Part 1, 16): u16 nameAlg || H_nameAlg(TPMS_NV_PUBLIC). */
export function nvName(p: Pick<NvPublic, 'nameAlg' | 'bytes'>): Buffer {
  const h = HASH_ALGS[p.nameAlg];
  if (!h) throw structureError('TPMS_NV_PUBLIC', `name algorithm 0x${p.nameAlg.toString(16)} is not supported`);
  const alg = Buffer.alloc(2);
  alg.writeUInt16BE(p.nameAlg);
  return Buffer.concat([alg, createHash(h.node).update(p.bytes).digest()]);
}

/** How an NV index is authorized: the owner hierarchy, or the index's own (empty) authValue. */
export type NvAuth = 'owner' | 'index';

/** TPM_RH_OWNER: a permanent handle's Name is the handle itself (Part 1, 16). */
const TPM_RH_OWNER = 0x40000001;

/**
 * The cpHash of TPM2_NV_Read(authHandle, nvIndex, size, offset) (Part 1, 18.7): SHA-256 of
 * commandCode || Name(authHandle) || Name(nvIndex) || size u16 || offset u16. authHandle is the owner
 * hierarchy or the index itself. A session's command HMAC covers it, so a TPM that accepts the
 * HMAC computed the same cpHash: its index has `name`.
 */
export function nvReadCpHash(auth: NvAuth, name: Uint8Array, size: number, offset = 0): Buffer {
  const w = new TpmWriter().u32(TPM_CC_NV_READ);
  if (auth === 'owner') w.u32(TPM_RH_OWNER);
  else w.bytes(name);
  return createHash('sha256').update(w.bytes(name).u16(size).u16(offset).toBuffer()).digest();
}

/** TPM2_NV_ReadPublic(nvIndex) as a raw command (Part 3, 31.6.2): no sessions. */
export function nvReadPublicCommand(index: number): Buffer {
  return new TpmWriter().u16(TPM_ST_NO_SESSIONS).u32(14).u32(TPM_CC_NV_READ_PUBLIC).u32(index).toBuffer();
}

/**
 * The response to nvReadPublicCommand(index) (Part 3, 31.6.2: tag, size, responseCode, then
 * TPM2B_NV_PUBLIC and TPM2B_NAME). Undefined when the TPM says no index is defined there
 * (TPM_RC_HANDLE); another response code becomes the EdgeguardError tpm2-tools errors become.
 * The public area must be the index asked for, and its Name the one the TPM returned.
 */
export function parseNvReadPublicResponse(bytes: Uint8Array, index: number): NvPublic | undefined {
  const r = new TpmReader(bytes, 'TPM2_NV_ReadPublic response');
  const tag = r.u16('tag');
  const size = r.u32('responseSize');
  if (size !== bytes.length) throw structureError(r.what, `responseSize ${size} but ${bytes.length} bytes arrived`);
  const rc = r.u32('responseCode');
  if (rc !== 0) {
    r.end();
    if ((rc & ~0xf00) === TPM_RC_HANDLE) return undefined;
    throw tpmErrorFor(decodeResponseCode(rc), `read the public area of NV index 0x${index.toString(16)}`, 'tpm2_send');
  }
  if (tag !== TPM_ST_NO_SESSIONS) throw structureError(r.what, `tag 0x${tag.toString(16)} is not TPM_ST_NO_SESSIONS`);
  const inner = new TpmReader(r.tpm2b('nvPublic'), 'TPMS_NV_PUBLIC');
  const pub = readNvPublic(inner);
  inner.end();
  const name = r.tpm2b('nvName', MAX_DIGEST + 2);
  r.end();
  if (pub.nvIndex !== index)
    throw new EdgeguardError(
      'EG_TPM_STRUCTURE',
      `the TPM answered NV_ReadPublic for 0x${index.toString(16)} with index 0x${pub.nvIndex.toString(16)}; something between this host and its TPM alters answers.`,
    );
  if (!nvName(pub).equals(name)) throw structureError(r.what, 'the Name does not hash the public area it came with');
  return pub;
}
