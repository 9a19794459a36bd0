/**
 * The authorized PCR policy file (`*.pcrauth.json`): the operator's PCR policy signing key approves
 * one PolicyPCR digest, so a device whose binding key's policy is PolicyAuthorize(that key) may use
 * the key when its PCRs hold these values (policy.ts; layout byte by byte in docs/formats.md).
 *
 *   { "type": "edgeguard-pcr-authorization", "version": 1,
 *     "pcrs": "sha256:0,2,4,7", "pcrValues": { "sha256": { "0": hex, ... } },
 *     "approvedPolicy": hex(PolicyPCR digest, SHA-256), "policyRef": hex("edgeguard-pcr-policy/1"),
 *     "signer": hex(name of the signing key), "signature": base64(RSASSA-PKCS1-v1_5 SHA-256
 *     over approvedPolicy || policyRef), "createdAt": ISO 8601, "label"?: text }
 *
 * The signature is exactly what TPM2_VerifySignature checks (scheme RSASSA, hash SHA-256), so the
 * device hands it to the TPM as is. A parse recomputes approvedPolicy from the values, and checks the
 * signer and the signature in software before the TPM is asked, so a wrong file fails with a sentence
 * instead of TPM_RC_SIGNATURE.
 */
import { sign as rsaSign, verify as rsaVerify, type KeyObject } from 'node:crypto';
import { describeValue, EdgeguardError } from '../errors/index.ts';
import { HASH_ALGS, TPM_ALG } from './constants.ts';
import { formatPcrSelection, parsePcrSelection, policyPcrDigest, type PcrSelection, type PcrValues } from './pcr.ts';
import { PCR_POLICY_REF, authorizationMessage, policySignerPublic } from './policy.ts';

export const PCR_AUTHORIZATION_TYPE = 'edgeguard-pcr-authorization';
/** Bigger than any honest file (24 PCRs x 4 banks of SHA-512 in hex is ~13 KB). */
export const PCR_AUTHORIZATION_MAX_BYTES = 32 * 1024;
/** The tamper response's PCR (src/tamper): its value after boot is all zeros. */
export const TAMPER_PCR = 16;

export interface PcrAuthorization {
  type: typeof PCR_AUTHORIZATION_TYPE;
  version: 1;
  pcrs: string;
  pcrValues: Record<string, Record<string, string>>;
  approvedPolicy: string;
  policyRef: string;
  signer: string;
  signature: string;
  createdAt: string;
  label?: string;
}

export interface ParsedPcrAuthorization {
  file: PcrAuthorization;
  selection: PcrSelection;
  values: PcrValues;
  approvedPolicy: Buffer;
  signature: Buffer;
  signer: Buffer;
}

const MEMBERS = [
  'type',
  'version',
  'pcrs',
  'pcrValues',
  'approvedPolicy',
  'policyRef',
  'signer',
  'signature',
  'createdAt',
  'label',
];

function bad(source: string, why: string): EdgeguardError {
  return new EdgeguardError(
    'EG_FORMAT',
    `${source} is not a PCR authorization (${why}); make one with \`edgeguard attest authorize-pcrs\`.`,
  );
}

function hexField(o: Record<string, unknown>, k: string, source: string, bytes?: number, label = k): Buffer {
  const v = o[k];
  if (typeof v !== 'string' || !/^(?:[0-9a-f]{2})+$/.test(v) || (bytes !== undefined && v.length !== bytes * 2))
    throw bad(source, `${label} is not ${bytes ?? 'some'} bytes of lowercase hex`);
  return Buffer.from(v, 'hex');
}

/** PCR values for exactly the selection, each the bank's digest size. */
function readValues(raw: unknown, sel: PcrSelection, source: string): PcrValues {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw bad(source, 'pcrValues is not an object');
  const banks = raw as Record<string, unknown>;
  const values: PcrValues = {};
  const names = sel.map((b) => HASH_ALGS[b.hashAlg]!.name);
  for (const k of Object.keys(banks))
    if (!names.includes(k)) throw bad(source, `pcrValues has bank "${k}" not in pcrs`);
  for (const b of sel) {
    const bank = HASH_ALGS[b.hashAlg]!;
    const entries = banks[bank.name];
    if (typeof entries !== 'object' || entries === null || Array.isArray(entries))
      throw bad(source, `pcrValues.${bank.name} is missing`);
    const e = entries as Record<string, unknown>;
    const want = b.pcrs.map(String);
    if (Object.keys(e).length !== want.length || !want.every((i) => Object.hasOwn(e, i)))
      throw bad(source, `pcrValues.${bank.name} does not list exactly PCRs ${b.pcrs.join(',')}`);
    values[bank.name] = {};
    for (const i of b.pcrs)
      values[bank.name]![i] = hexField(e, String(i), source, bank.size, `pcrValues.${bank.name}.${i}`);
  }
  return values;
}

/**
 * Parse and check a PCR authorization: members and forms, approvedPolicy = PolicyPCR(pcrs, values),
 * and, when `signerKey` is given, the signer's name and the signature.
 */
export function parsePcrAuthorization(
  text: string,
  opts: { signerKey?: KeyObject; source?: string } = {},
): ParsedPcrAuthorization {
  const source = opts.source ?? 'the PCR authorization';
  if (Buffer.byteLength(text) > PCR_AUTHORIZATION_MAX_BYTES)
    throw new EdgeguardError('EG_FILE_TOO_LARGE', `${source} is larger than ${PCR_AUTHORIZATION_MAX_BYTES} bytes.`);
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw bad(source, 'not JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad(source, 'not a JSON object');
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!MEMBERS.includes(k)) throw bad(source, `unknown member "${k}"`);
  if (o.type !== PCR_AUTHORIZATION_TYPE) throw bad(source, `type is not "${PCR_AUTHORIZATION_TYPE}"`);
  if (o.version !== 1)
    throw new EdgeguardError(
      'EG_UNSUPPORTED',
      `${source} is version ${describeValue(o.version)}; this build reads version 1.`,
    );
  if (typeof o.pcrs !== 'string' || o.pcrs.length > 200) throw bad(source, 'pcrs is not a PCR selection');
  let selection: PcrSelection;
  try {
    selection = parsePcrSelection(o.pcrs);
  } catch {
    throw bad(source, 'pcrs is not a PCR selection');
  }
  if (formatPcrSelection(selection) !== o.pcrs) throw bad(source, 'pcrs is not in its canonical form');
  const values = readValues(o.pcrValues, selection, source);
  const approvedPolicy = hexField(o, 'approvedPolicy', source, 32);
  const policyRef = hexField(o, 'policyRef', source);
  if (!policyRef.equals(PCR_POLICY_REF)) throw bad(source, `policyRef is not hex("${PCR_POLICY_REF.toString()}")`);
  const signer = hexField(o, 'signer', source, 34);
  if (typeof o.signature !== 'string' || !/^[A-Za-z0-9+/]{342}==$/.test(o.signature))
    throw bad(source, 'signature is not base64 of a 256-byte RSA signature');
  const signature = Buffer.from(o.signature, 'base64');
  if (typeof o.createdAt !== 'string' || o.createdAt.length > 40 || Number.isNaN(Date.parse(o.createdAt)))
    throw bad(source, 'createdAt is not a date');
  if (o.label !== undefined && (typeof o.label !== 'string' || o.label.length > 200))
    throw bad(source, 'label is not text of at most 200 characters');
  if (!policyPcrDigest(selection, values, TPM_ALG.SHA256).equals(approvedPolicy))
    throw new EdgeguardError(
      'EG_TAMPERED',
      `${source}: approvedPolicy is not the PolicyPCR digest of its pcrValues; the file was altered.`,
    );
  if (opts.signerKey) {
    const expected = policySignerPublic(opts.signerKey).name;
    if (!expected.equals(signer))
      throw new EdgeguardError(
        'EG_WRONG_KEY',
        `${source} is signed by another PCR policy key (${signer.toString('hex').slice(0, 16)}…, this device trusts ${expected.toString('hex').slice(0, 16)}…).`,
      );
    if (!rsaVerify('sha256', authorizationMessage(approvedPolicy), opts.signerKey, signature))
      throw new EdgeguardError(
        'EG_SIGNATURE_INVALID',
        `${source}: the signature does not verify with the PCR policy key; the file was altered.`,
      );
  }
  return { file: o as unknown as PcrAuthorization, selection, values, approvedPolicy, signature, signer };
}

export interface SignPcrAuthorizationOptions {
  privateKey: KeyObject;
  selection: PcrSelection;
  values: PcrValues;
  label?: string;
  /** Sign even when the tamper PCR (16) is selected with a value other than zeros. */
  allowTamperPcr?: boolean;
  now?: Date;
}

/** Sign an authorization (operator side, no TPM). */
export function signPcrAuthorization(o: SignPcrAuthorizationOptions): PcrAuthorization {
  const pcrValues: Record<string, Record<string, string>> = {};
  for (const b of o.selection) {
    const bank = HASH_ALGS[b.hashAlg];
    if (!bank) throw new EdgeguardError('EG_USAGE', `PCR bank 0x${b.hashAlg.toString(16)} is not supported.`);
    pcrValues[bank.name] = {};
    for (const i of b.pcrs) {
      const v = o.values[bank.name]?.[i];
      if (!v || v.length !== bank.size)
        throw new EdgeguardError('EG_USAGE', `no ${bank.size}-byte value for PCR ${bank.name}:${i} was given.`);
      if (i === TAMPER_PCR && !o.allowTamperPcr && v.some((x) => x !== 0))
        throw new EdgeguardError(
          'EG_USAGE',
          `PCR ${bank.name}:${TAMPER_PCR} is not zero: the tamper response extended it. Authorizing this value would undo the tamper lock; authorize the value after boot (zeros).`,
        );
      pcrValues[bank.name]![String(i)] = v.toString('hex');
    }
  }
  const approvedPolicy = policyPcrDigest(o.selection, o.values, TPM_ALG.SHA256);
  const signer = policySignerPublic(o.privateKey);
  const signature = rsaSign('sha256', authorizationMessage(approvedPolicy), o.privateKey);
  return {
    type: PCR_AUTHORIZATION_TYPE,
    version: 1,
    pcrs: formatPcrSelection(o.selection),
    pcrValues,
    approvedPolicy: approvedPolicy.toString('hex'),
    policyRef: PCR_POLICY_REF.toString('hex'),
    signer: signer.name.toString('hex'),
    signature: signature.toString('base64'),
    createdAt: (o.now ?? new Date()).toISOString(),
    ...(o.label !== undefined ? { label: o.label } : {}),
  };
}
