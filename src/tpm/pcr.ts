/**
 * PCR selections: the tpm2-tools text form (`sha256:0,1,2,3,4,5,7`, banks joined with `+`),
 * TPML_PCR_SELECTION (TCG TPM 2.0 Library Part 2, 10.9.7 and 10.6.2), the PCR digest a quote or a
 * PolicyPCR signs (Part 3, 18.4 and 23.7), and the PolicyPCR policy digest itself.
 */
import { createHash } from 'node:crypto';
import { EdgeguardError } from '../errors/index.ts';
import { HASH_ALGS, TPM_CC_POLICY_PCR, hashAlgByName } from './constants.ts';
import { TpmReader, TpmWriter, structureError } from './reader.ts';

export interface PcrBankSelection {
  /** TPM_ALG_ID of the bank. */
  hashAlg: number;
  /** PCR indices, ascending, unique. */
  pcrs: number[];
}
export type PcrSelection = PcrBankSelection[];

/**
 * The binding key's PolicyPCR for new devices: the firmware and boot chain (0-5), Secure Boot
 * state (7), and 16, the PCR the tamper response extends (src/tamper) so the TPM refuses the key
 * after a tamper until the next boot. Devices provisioned with the older default
 * (sha256:0,1,2,3,4,5,7) are not covered by the tamper PCR until re-provisioned.
 */
export const DEFAULT_BINDING_PCRS = 'sha256:0,1,2,3,4,5,7,16';
const MAX_PCR = 23;

/** Parse `sha256:0,1,2+sha1:7` into a selection (banks in the order written, PCRs sorted). */
export function parsePcrSelection(text: string): PcrSelection {
  const banks = text.trim().split('+');
  const seen = new Set<number>();
  const out: PcrSelection = [];
  for (const bank of banks) {
    const m = /^([a-z0-9]+):([0-9]+(?:,[0-9]+)*)$/.exec(bank.trim());
    const usage = `"${text}" is not a PCR selection; write it as bank:indices, e.g. ${DEFAULT_BINDING_PCRS}.`;
    if (!m) throw new EdgeguardError('EG_USAGE', usage);
    const hashAlg = hashAlgByName(m[1]!);
    if (hashAlg === undefined)
      throw new EdgeguardError(
        'EG_USAGE',
        `"${m[1]}" is not a PCR bank this TPM client supports (sha1, sha256, sha384, sha512).`,
      );
    if (seen.has(hashAlg)) throw new EdgeguardError('EG_USAGE', `the PCR bank ${m[1]} appears twice in "${text}".`);
    seen.add(hashAlg);
    const pcrs = [...new Set(m[2]!.split(',').map(Number))].sort((a, b) => a - b);
    for (const p of pcrs)
      if (p > MAX_PCR)
        throw new EdgeguardError('EG_USAGE', `PCR ${p} does not exist; a PC-client TPM has PCRs 0 to ${MAX_PCR}.`);
    out.push({ hashAlg, pcrs });
  }
  return out;
}

export function formatPcrSelection(sel: PcrSelection): string {
  return sel.map((b) => `${HASH_ALGS[b.hashAlg]?.name ?? `0x${b.hashAlg.toString(16)}`}:${b.pcrs.join(',')}`).join('+');
}

/** TPML_PCR_SELECTION: u32 count; per bank u16 hash, u8 sizeofSelect (3), bitmap (PCR n: byte n/8, bit n%8). */
export function marshalPcrSelection(sel: PcrSelection): Buffer {
  const w = new TpmWriter().u32(sel.length);
  for (const b of sel) {
    const bitmap = Buffer.alloc(3);
    for (const p of b.pcrs) bitmap[p >> 3]! |= 1 << (p & 7);
    w.u16(b.hashAlg).u8(3).bytes(bitmap);
  }
  return w.toBuffer();
}

/** Read a TPML_PCR_SELECTION from inside a larger structure. */
export function readPcrSelection(r: TpmReader): PcrSelection {
  const count = r.u32('pcrSelect.count');
  // TPM_PCR_SELECT_MAX / HASH_COUNT: a TPM has at most a handful of banks.
  if (count > 16) throw structureError(r.what, `pcrSelect claims ${count} banks`);
  const out: PcrSelection = [];
  for (let i = 0; i < count; i++) {
    const hashAlg = r.u16('pcrSelect.hash');
    const size = r.u8('pcrSelect.sizeofSelect');
    if (size > 32) throw structureError(r.what, `sizeofSelect ${size} is larger than any TPM's`);
    const bitmap = r.bytes(size, 'pcrSelect.pcrSelect');
    const pcrs: number[] = [];
    for (let n = 0; n < size * 8; n++) if ((bitmap[n >> 3]! >> (n & 7)) & 1) pcrs.push(n);
    out.push({ hashAlg, pcrs });
  }
  return out;
}

/** PCR values keyed by bank and index, as hex, e.g. values.sha256[7]. */
export type PcrValues = Record<string, Record<number, Buffer>>;

/**
 * The digest over the selected PCR values, concatenated in selection order (banks as listed,
 * PCRs ascending), hashed with `hashAlg`: TPMS_QUOTE_INFO.pcrDigest and PolicyPCR's pcrDigest.
 */
export function pcrCompositeDigest(sel: PcrSelection, values: PcrValues, hashAlg: number): Buffer {
  const h = HASH_ALGS[hashAlg];
  if (!h) throw new EdgeguardError('EG_UNSUPPORTED', `hash algorithm 0x${hashAlg.toString(16)} is not supported.`);
  const hash = createHash(h.node);
  for (const b of sel) {
    const bank = HASH_ALGS[b.hashAlg];
    if (!bank) throw new EdgeguardError('EG_UNSUPPORTED', `PCR bank 0x${b.hashAlg.toString(16)} is not supported.`);
    for (const p of b.pcrs) {
      const v = values[bank.name]?.[p];
      if (!v || v.length !== bank.size)
        throw new EdgeguardError(
          'EG_TPM_STRUCTURE',
          `PCR ${bank.name}:${p} is missing from the PCR values or has the wrong size.`,
        );
      hash.update(v);
    }
  }
  return hash.digest();
}

/**
 * TPM2_PolicyPCR (Part 3, 23.7): policyDigest' = H(policyDigest || TPM_CC_PolicyPCR || pcrs || pcrDigest),
 * starting from a zero digest of the policy hash's size. Lets a verifier predict a binding key's
 * authPolicy from PCR values without a TPM.
 */
export function policyPcrDigest(
  sel: PcrSelection,
  values: PcrValues,
  policyHashAlg: number,
  previous?: Buffer,
): Buffer {
  const h = HASH_ALGS[policyHashAlg];
  if (!h)
    throw new EdgeguardError('EG_UNSUPPORTED', `hash algorithm 0x${policyHashAlg.toString(16)} is not supported.`);
  const cc = Buffer.alloc(4);
  cc.writeUInt32BE(TPM_CC_POLICY_PCR);
  return createHash(h.node)
    .update(previous ?? Buffer.alloc(h.size))
    .update(cc)
    .update(marshalPcrSelection(sel))
    .update(pcrCompositeDigest(sel, values, policyHashAlg))
    .digest();
}
