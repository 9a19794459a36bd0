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
import { parseAnswer } from './answer.ts';
import type { FleetClient } from './client.ts';

/** Largest event log a device may push; real firmware logs are tens of KiB. */
export const MAX_EVIDENCE_LOG_BYTES = 1024 * 1024;
/** TPMS_ATTEST of a quote over 24 PCRs in 4 banks stays far below this, as does an RSA-4096 signature. */
const MAX_QUOTE_BYTES = 4096;
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

/** Push evidence over `nonce`; with `askNextNonce` the verdict carries the next round's nonce. */
export async function pushAttestationEvidence(
  client: FleetClient,
  nonce: string,
  evidence: Evidence,
  o: { askNextNonce?: boolean } = {},
): Promise<VerdictResponse> {
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
