/**
 * The attestation exchange between a device and the control plane (docs/formats.md, "Attestation
 * evidence"): the device asks for a nonce, has its TPM quote the policy's PCRs over it, and pushes
 * the quote with its measured-boot event log. The schemas here are the server's validation (as JSON
 * Schema, unknown members refused) and the agent's client, so the two cannot drift.
 *
 *   POST /v1/attestation/nonce      device  {}                        -> NonceResponse
 *   POST /v1/attestation/evidence   device  EvidenceRequest           -> VerdictResponse
 *
 * A device in steady state makes one request per appraisal: evidence with `nextNonce: true` is
 * answered with the nonce of its next round (single use, bound to the device, the same expiry),
 * and the device asks /nonce only when it holds none that is still usable.
 */
import { z } from 'zod';
import { EdgeguardError } from '../errors/index.ts';
import { parseAnswer } from './answer.ts';
import type { FleetClient } from './client.ts';

/** Largest event log a device may push; real firmware logs are tens of KiB. */
export const MAX_EVIDENCE_LOG_BYTES = 1024 * 1024;
/** TPMS_ATTEST of a quote over 24 PCRs in 4 banks stays far below this, as does an RSA-4096 signature. */
export const MAX_QUOTE_BYTES = 4096;
const NONCE_BYTES = 32;

const BASE64_ALPHABET = /^[A-Za-z0-9+/]$/;

/**
 * The language of /^[A-Za-z0-9+/]*={0,2}$/ at a fraction of a regular expression's cost on a
 * ~50 KB log: Node's decoder skips what is not base64 (and reads base64url's `-` and `_`), so the
 * text is decoded and encoded again; every character but the last (whose low bits the decoder may
 * drop) must come back unchanged, and the last must be in the alphabet.
 */
export function isBase64Text(text: string): boolean {
  const end = text.endsWith('==') ? text.length - 2 : text.endsWith('=') ? text.length - 1 : text.length;
  if (end === 0) return true;
  if (!BASE64_ALPHABET.test(text[end - 1]!)) return false;
  const body = text.slice(0, end - 1);
  // '=' inside the text could line up with the padding of the encoding.
  if (body.includes('=')) return false;
  return Buffer.from(text.slice(0, end), 'base64').toString('base64').startsWith(body);
}

/**
 * Base64 text of at most `maxBytes` bytes. Its alphabet is checked once, by zod: the JSON Schema
 * made from this (the server route's body schema, the OpenAPI document) carries the type and the
 * length, and names the encoding.
 */
const base64Of = (maxBytes: number) =>
  z
    .string()
    .max(Math.ceil(maxBytes / 3) * 4)
    .refine(isBase64Text, 'base64')
    .meta({ contentEncoding: 'base64' });
const hexDigest = z.string().regex(/^([0-9a-f]{40}|[0-9a-f]{64}|[0-9a-f]{96}|[0-9a-f]{128})$/);

export const NonceResponse = z.strictObject({
  nonce: z.string().regex(new RegExp(`^[0-9a-f]{${NONCE_BYTES * 2}}$`)),
  expiresAt: z.string(),
  /** The PCR selection the device's policy needs quoted (tpm2-tools form), all banks the policy names. */
  pcrs: z.string().max(200),
});
export type NonceResponse = z.infer<typeof NonceResponse>;

/**
 * The nonce of the device's next round, carried by a verdict: what /nonce answers, plus its
 * lifetime in seconds, so the device can tell when it expires by its own clock (not the server's).
 */
export const NextNonce = NonceResponse.extend({ ttlSeconds: z.number().int().min(1).max(86_400) }).strict();
export type NextNonce = z.infer<typeof NextNonce>;

export const EvidenceRequest = z.strictObject({
  nonce: NonceResponse.shape.nonce,
  /** TPMS_ATTEST of a TPM2_Quote, as the TPM signed it. */
  quote: base64Of(MAX_QUOTE_BYTES),
  /** TPMT_SIGNATURE over it, by the device's AK. */
  signature: base64Of(MAX_QUOTE_BYTES),
  /** binary_bios_measurements. */
  eventLog: base64Of(MAX_EVIDENCE_LOG_BYTES),
  /** What the device read from its PCRs (bank -> index -> hex): diagnostics only, never trusted. */
  pcrValues: z
    .record(z.enum(['sha1', 'sha256', 'sha384', 'sha512']), z.record(z.string().regex(/^\d{1,2}$/), hexDigest))
    .optional(),
  /** Ask for the next round's nonce in the verdict (one request per appraisal instead of two). */
  nextNonce: z.literal(true).optional(),
});
export type EvidenceRequest = z.infer<typeof EvidenceRequest>;

/**
 * Evidence as the verifier reads it, from either wire form: the JSON body (base64 members) or the
 * binary body (`EVIDENCE_MEDIA_TYPE`). `nonce` is lowercase hex, as issued.
 */
export interface DecodedEvidence {
  nonce: string;
  quote: Buffer;
  signature: Buffer;
  eventLog: Buffer;
  nextNonce: boolean;
}

/**
 * The binary evidence body (docs/formats.md, "Binary evidence body"): the same members as the JSON
 * body without base64 or JSON around the ~50 KB log, so the server neither checks the base64
 * alphabet of the log nor decodes it. `pcrValues` (diagnostics only) has no place in it.
 *
 *   "EGEV" | version 1 | flags (bit 0: nextNonce) | nonce (32) | u16 quote length | quote |
 *   u16 signature length | signature | u32 event log length | event log          (big-endian)
 */
export const EVIDENCE_MEDIA_TYPE = 'application/vnd.edgeguard.evidence';
const EVIDENCE_MAGIC = Buffer.from('EGEV', 'latin1');
const EVIDENCE_VERSION = 1;
const FLAG_NEXT_NONCE = 0x01;
const EVIDENCE_HEADER_BYTES = EVIDENCE_MAGIC.length + 2 + NONCE_BYTES;
/** The largest binary evidence body: header, both length-prefixed quote members at their cap, the log at its cap. */
export const MAX_EVIDENCE_BODY_BYTES = EVIDENCE_HEADER_BYTES + 2 * (2 + MAX_QUOTE_BYTES) + 4 + MAX_EVIDENCE_LOG_BYTES;

export function encodeEvidence(e: DecodedEvidence): Buffer {
  const nonce = Buffer.from(e.nonce, 'hex');
  if (nonce.length !== NONCE_BYTES || nonce.toString('hex') !== e.nonce.toLowerCase())
    throw new EdgeguardError('EG_BAD_REQUEST', `the nonce is not ${NONCE_BYTES} bytes of hex.`);
  if (e.quote.length > MAX_QUOTE_BYTES || e.signature.length > MAX_QUOTE_BYTES)
    throw new EdgeguardError('EG_BAD_REQUEST', `a quote or its signature is over ${MAX_QUOTE_BYTES} bytes.`);
  if (e.eventLog.length > MAX_EVIDENCE_LOG_BYTES)
    throw new EdgeguardError('EG_BAD_REQUEST', `the event log is over ${MAX_EVIDENCE_LOG_BYTES} bytes.`);
  const out = Buffer.allocUnsafe(
    EVIDENCE_HEADER_BYTES + 4 + e.quote.length + e.signature.length + 4 + e.eventLog.length,
  );
  let at = EVIDENCE_MAGIC.copy(out, 0);
  at = out.writeUInt8(EVIDENCE_VERSION, at);
  at = out.writeUInt8(e.nextNonce ? FLAG_NEXT_NONCE : 0, at);
  at += nonce.copy(out, at);
  at = out.writeUInt16BE(e.quote.length, at);
  at += e.quote.copy(out, at);
  at = out.writeUInt16BE(e.signature.length, at);
  at += e.signature.copy(out, at);
  at = out.writeUInt32BE(e.eventLog.length, at);
  e.eventLog.copy(out, at);
  return out;
}

/**
 * A binary evidence body, checked as the JSON form's schema checks its members: magic, version,
 * no unknown flag, every length within its cap and inside the body, nothing after the log. The
 * members are views into `body`, not copies. Throws EG_BAD_REQUEST (a 400) for anything else.
 */
export function decodeEvidence(body: Buffer): DecodedEvidence {
  const bad = (why: string) => new EdgeguardError('EG_BAD_REQUEST', `the evidence is invalid: ${why}.`);
  if (body.length < EVIDENCE_HEADER_BYTES || !body.subarray(0, EVIDENCE_MAGIC.length).equals(EVIDENCE_MAGIC))
    throw bad(`not a binary evidence body (${EVIDENCE_MEDIA_TYPE} starts with "EGEV")`);
  const version = body[EVIDENCE_MAGIC.length]!;
  if (version !== EVIDENCE_VERSION)
    throw bad(`version ${version} is not one this control plane reads (${EVIDENCE_VERSION}); send the JSON form`);
  const flags = body[EVIDENCE_MAGIC.length + 1]!;
  if ((flags & ~FLAG_NEXT_NONCE) !== 0) throw bad(`unknown flags 0x${flags.toString(16)}`);
  let at = EVIDENCE_MAGIC.length + 2;
  const nonce = body.toString('hex', at, at + NONCE_BYTES);
  at += NONCE_BYTES;
  const member = (name: string, lengthBytes: 2 | 4, max: number): Buffer => {
    if (body.length - at < lengthBytes) throw bad(`the body ends before the length of ${name}`);
    const length = lengthBytes === 2 ? body.readUInt16BE(at) : body.readUInt32BE(at);
    at += lengthBytes;
    if (length > max) throw bad(`${name} is ${length} bytes, over its cap of ${max}`);
    if (body.length - at < length) throw bad(`the body ends inside ${name}`);
    at += length;
    return body.subarray(at - length, at);
  };
  const quote = member('quote', 2, MAX_QUOTE_BYTES);
  const signature = member('signature', 2, MAX_QUOTE_BYTES);
  const eventLog = member('eventLog', 4, MAX_EVIDENCE_LOG_BYTES);
  if (at !== body.length) throw bad(`${body.length - at} bytes follow the event log`);
  return { nonce, quote, signature, eventLog, nextNonce: (flags & FLAG_NEXT_NONCE) !== 0 };
}

/** The JSON form, once its schema has held, as the verifier reads it. */
export function evidenceFromJson(body: EvidenceRequest): DecodedEvidence {
  return {
    nonce: body.nonce,
    quote: Buffer.from(body.quote, 'base64'),
    signature: Buffer.from(body.signature, 'base64'),
    eventLog: Buffer.from(body.eventLog, 'base64'),
    nextNonce: body.nextNonce === true,
  };
}

export const AttestationReason = z.strictObject({ code: z.string(), detail: z.string() });
/** A stable reason code (appraisal: src/attest/appraise.ts REASON_CODES; verifier: NONCE_*, NO_POLICY, ...). */
const ReasonCode = z.string().regex(/^[A-Z][A-Z0-9_]{0,63}$/);
/** Every failed check's code, once each, in the order of `reasons`: what a program matches on. */
const Codes = z.array(ReasonCode);
/** What happened since the device's last accepted quote: REBOOT (resetCount up), RESTART (restartCount up: a TPM Restart or Resume). */
export const VerdictEvent = z.strictObject({ code: z.enum(['REBOOT', 'RESTART']), detail: z.string() });

export const VerdictResponse = z.strictObject({
  verdictId: z.string(),
  pass: z.boolean(),
  codes: Codes,
  reasons: z.array(AttestationReason),
  events: z.array(VerdictEvent),
  /** End of the freshness window this verdict opened; absent when it failed. */
  trustedUntil: z.string().optional(),
  /** The next round's nonce, when the evidence asked for it (`nextNonce: true`). */
  nextNonce: NextNonce.optional(),
});
export type VerdictResponse = z.infer<typeof VerdictResponse>;

/** What the gate answers: trusted only with a passing verdict still inside its window. */
export const AttestationStatus = z.strictObject({
  deviceId: z.string(),
  state: z.enum(['trusted', 'untrusted', 'unknown']),
  trusted: z.boolean(),
  trustedUntil: z.string().optional(),
  lastVerdict: z
    .strictObject({
      id: z.string(),
      pass: z.boolean(),
      codes: Codes,
      reasons: z.array(AttestationReason),
      events: z.array(VerdictEvent).optional(),
      receivedAt: z.string(),
      policySha256: z.string().optional(),
    })
    .optional(),
  /** The codes of `reasons`. */
  codes: Codes,
  /** Why the device is not trusted now (the last verdict's reasons, or EVIDENCE_STALE, or NO_EVIDENCE). */
  reasons: z.array(AttestationReason),
});
export type AttestationStatus = z.infer<typeof AttestationStatus>;

export interface Evidence {
  quote: Uint8Array;
  signature: Uint8Array;
  eventLog: Uint8Array;
  pcrValues?: EvidenceRequest['pcrValues'];
}

export async function requestAttestationNonce(client: FleetClient): Promise<NonceResponse> {
  const r = await client.call('POST', '/v1/attestation/nonce', {});
  return parseAnswer(NonceResponse, r.body, 'attestation nonce');
}

/**
 * Push evidence over `nonce`; with `askNextNonce` the verdict carries the next round's nonce. With
 * `binary` the body is the binary form (EVIDENCE_MEDIA_TYPE), which a control plane older than it
 * refuses with 415 EG_UNSUPPORTED_MEDIA_TYPE; `pcrValues` is then not sent (diagnostics only).
 */
export async function pushAttestationEvidence(
  client: FleetClient,
  nonce: string,
  evidence: Evidence,
  o: { askNextNonce?: boolean; binary?: boolean } = {},
): Promise<VerdictResponse> {
  if (o.binary) {
    const body = encodeEvidence({
      nonce,
      quote: Buffer.from(evidence.quote),
      signature: Buffer.from(evidence.signature),
      eventLog: Buffer.from(evidence.eventLog),
      nextNonce: o.askNextNonce === true,
    });
    const r = await client.call('POST', '/v1/attestation/evidence', body, { 'content-type': EVIDENCE_MEDIA_TYPE });
    return parseAnswer(VerdictResponse, r.body, 'attestation verdict');
  }
  const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64');
  const body: EvidenceRequest = {
    nonce,
    quote: b64(evidence.quote),
    signature: b64(evidence.signature),
    eventLog: b64(evidence.eventLog),
    ...(evidence.pcrValues ? { pcrValues: evidence.pcrValues } : {}),
    ...(o.askNextNonce ? { nextNonce: true as const } : {}),
  };
  const r = await client.call('POST', '/v1/attestation/evidence', body);
  return parseAnswer(VerdictResponse, r.body, 'attestation verdict');
}
