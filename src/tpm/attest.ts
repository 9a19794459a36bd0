/**
 * TPMS_ATTEST (TCG TPM 2.0 Library Part 2, 10.12.12) for TPM2_Certify (TPMS_CERTIFY_INFO, 10.12.3),
 * TPM2_Quote (TPMS_QUOTE_INFO, 10.12.4) and TPM2_CertifyCreation (TPMS_CREATION_INFO, 10.12.7).
 * Other attestation types are refused: edgeguard never asks for them.
 */
import { TPM_GENERATED_VALUE, TPM_ST } from './constants.ts';
import { readPcrSelection, type PcrSelection } from './pcr.ts';
import { TpmReader, structureError } from './reader.ts';

/** sizeof(TPMU_NAME): a handle or a u16 alg + the largest digest. */
const MAX_NAME = 2 + 64;
const MAX_DATA = 64;
const MAX_DIGEST = 64;

export interface ClockInfo {
  clock: bigint;
  resetCount: number;
  restartCount: number;
  safe: boolean;
}

export type AttestedInfo =
  | { kind: 'certify'; name: Buffer; qualifiedName: Buffer }
  | { kind: 'quote'; pcrSelect: PcrSelection; pcrDigest: Buffer }
  | { kind: 'creation'; objectName: Buffer; creationHash: Buffer };

export interface TpmsAttest {
  type: number;
  qualifiedSigner: Buffer;
  extraData: Buffer;
  clockInfo: ClockInfo;
  firmwareVersion: bigint;
  attested: AttestedInfo;
}

export function parseTpmsAttest(bytes: Uint8Array): TpmsAttest {
  const r = new TpmReader(bytes, 'TPMS_ATTEST');
  const magic = r.u32('magic');
  // Part 2, 10.12.12: magic must be TPM_GENERATED_VALUE, which is what stops a TPM from signing
  // external data that looks like an attestation.
  if (magic !== TPM_GENERATED_VALUE)
    throw structureError('TPMS_ATTEST', `magic is 0x${magic.toString(16)}, not TPM_GENERATED_VALUE`);
  const type = r.u16('type');
  const qualifiedSigner = r.tpm2b('qualifiedSigner', MAX_NAME);
  const extraData = r.tpm2b('extraData', MAX_DATA);
  const clock = r.u64('clockInfo.clock');
  const resetCount = r.u32('clockInfo.resetCount');
  const restartCount = r.u32('clockInfo.restartCount');
  const safeByte = r.u8('clockInfo.safe');
  if (safeByte > 1) throw structureError('TPMS_ATTEST', `clockInfo.safe is ${safeByte}, not YES or NO`);
  const firmwareVersion = r.u64('firmwareVersion');
  let attested: AttestedInfo;
  switch (type) {
    case TPM_ST.ATTEST_CERTIFY:
      attested = {
        kind: 'certify',
        name: r.tpm2b('certify.name', MAX_NAME),
        qualifiedName: r.tpm2b('certify.qualifiedName', MAX_NAME),
      };
      break;
    case TPM_ST.ATTEST_QUOTE:
      attested = { kind: 'quote', pcrSelect: readPcrSelection(r), pcrDigest: r.tpm2b('quote.pcrDigest', MAX_DIGEST) };
      break;
    case TPM_ST.ATTEST_CREATION:
      attested = {
        kind: 'creation',
        objectName: r.tpm2b('creation.objectName', MAX_NAME),
        creationHash: r.tpm2b('creation.creationHash', MAX_DIGEST),
      };
      break;
    default:
      throw structureError(
        'TPMS_ATTEST',
        `attestation type 0x${type.toString(16)} is not one edgeguard uses (certify, quote, creation)`,
      );
  }
  r.end();
  return {
    type,
    qualifiedSigner,
    extraData,
    clockInfo: { clock, resetCount, restartCount, safe: safeByte === 1 },
    firmwareVersion,
    attested,
  };
}

/** TPM2B_ATTEST (u16 size + TPMS_ATTEST), as some tools write it. */
export function parseTpm2bAttest(bytes: Uint8Array): { attest: TpmsAttest; attestBytes: Buffer } {
  const r = new TpmReader(bytes, 'TPM2B_ATTEST');
  const inner = r.tpm2b('attestationData');
  r.end();
  return { attest: parseTpmsAttest(inner), attestBytes: inner };
}
