/**
 * Sigstore bundles (protobuf-specs `dev.sigstore.bundle.v1.Bundle`, media type
 * application/vnd.dev.sigstore.bundle.v0.3+json, JSON in protobuf's camelCase mapping) holding a
 * DSSE envelope signed with a public key: the form the OpenSSF model_signing tool and cosign
 * (`verify-blob-attestation --bundle --key`) read for key-based signatures.
 *
 *   { "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
 *     "verificationMaterial": { "publicKey": { "hint": KEYID }, "tlogEntries": [],
 *                               "timestampVerificationData": { "rfc3161Timestamps": [] } },
 *     "dsseEnvelope": { "payload": B64, "payloadType": TYPE, "signatures": [{ "sig": B64, "keyid": KEYID }] } }
 *
 * The envelope inside is byte for byte the DSSE envelope of NAME.egm.sig.json, so the same
 * signature verifies either way; KEYID is the hex SHA-256 of the signer's SPKI DER. A bundle read
 * back yields that envelope, which is then verified against the trusted publisher keys like any
 * other: the hint is never trusted. Bundles that rest on a certificate (keyless, Fulcio) or on a
 * message signature instead of DSSE are refused: edgeguard trusts publisher keys, and transparency
 * log entries and timestamps a bundle may carry are not checked (docs/formats.md).
 */
import { z } from 'zod';
import { EdgeguardError } from '../errors/index.ts';
import type { DsseEnvelope } from './dsse.ts';

export const SIGSTORE_BUNDLE_MEDIA_TYPE = 'application/vnd.dev.sigstore.bundle.v0.3+json';
/** Older bundle versions carry the same fields for a key-based DSSE signature. */
const ACCEPTED_MEDIA_TYPES = [
  SIGSTORE_BUNDLE_MEDIA_TYPE,
  'application/vnd.dev.sigstore.bundle+json;version=0.3',
  'application/vnd.dev.sigstore.bundle+json;version=0.2',
] as const;

export interface SigstoreBundle {
  mediaType: string;
  verificationMaterial: {
    publicKey: { hint: string };
    tlogEntries: unknown[];
    timestampVerificationData: { rfc3161Timestamps: unknown[] };
  };
  dsseEnvelope: { payload: string; payloadType: string; signatures: Array<{ sig: string; keyid: string }> };
}

/** The bundle form of a DSSE envelope signed by the key `keyId` names. */
export function envelopeToBundle(envelope: DsseEnvelope, keyId: string): SigstoreBundle {
  return {
    mediaType: SIGSTORE_BUNDLE_MEDIA_TYPE,
    verificationMaterial: {
      publicKey: { hint: keyId },
      tlogEntries: [],
      timestampVerificationData: { rfc3161Timestamps: [] },
    },
    dsseEnvelope: {
      payload: envelope.payload,
      payloadType: envelope.payloadType,
      signatures: envelope.signatures.map((s) => ({ sig: s.sig, keyid: s.keyid })),
    },
  };
}

const bundleSchema = z.object({
  mediaType: z.string().max(128),
  verificationMaterial: z.object({
    publicKey: z.object({ hint: z.string().max(256).optional() }).optional(),
    x509CertificateChain: z.unknown().optional(),
    certificate: z.unknown().optional(),
    tlogEntries: z.array(z.unknown()).max(64).optional(),
    timestampVerificationData: z.unknown().optional(),
  }),
  dsseEnvelope: z
    .object({
      payload: z.string().max(16 * 1024 * 1024),
      payloadType: z.string().min(1).max(256),
      signatures: z
        .array(z.object({ sig: z.string().min(1).max(4096), keyid: z.string().max(256).optional() }))
        .min(1)
        .max(16),
    })
    .optional(),
  messageSignature: z.unknown().optional(),
});

/** Whether parsed JSON looks like a Sigstore bundle (has a sigstore bundle media type). */
export function isSigstoreBundle(value: unknown): boolean {
  const mediaType = (value as { mediaType?: unknown } | null)?.mediaType;
  return typeof mediaType === 'string' && mediaType.startsWith('application/vnd.dev.sigstore.bundle');
}

/** The DSSE envelope of a key-based Sigstore bundle; EG_SIGNATURE_INVALID or EG_UNSUPPORTED otherwise. */
export function bundleToEnvelope(value: unknown): DsseEnvelope {
  const parsed = bundleSchema.safeParse(value);
  if (!parsed.success)
    throw new EdgeguardError(
      'EG_SIGNATURE_INVALID',
      `the Sigstore bundle is malformed (${parsed.error.issues[0]?.path.join('.') || 'root'}: ${parsed.error.issues[0]?.message}).`,
    );
  const b = parsed.data;
  if (!(ACCEPTED_MEDIA_TYPES as readonly string[]).includes(b.mediaType))
    throw new EdgeguardError(
      'EG_UNSUPPORTED',
      `Sigstore bundle version "${b.mediaType}" is not supported; use ${SIGSTORE_BUNDLE_MEDIA_TYPE}.`,
    );
  const vm = b.verificationMaterial;
  if (vm.x509CertificateChain !== undefined || vm.certificate !== undefined || !vm.publicKey)
    throw new EdgeguardError(
      'EG_UNSUPPORTED',
      'the Sigstore bundle rests on a certificate (keyless signing); edgeguard verifies packages against publisher keys only: sign with a key (model_signing sign key / cosign --key).',
    );
  if (!b.dsseEnvelope)
    throw new EdgeguardError(
      'EG_UNSUPPORTED',
      'the Sigstore bundle holds a message signature, not a DSSE envelope over an in-toto statement; edgeguard packages are signed as DSSE (OpenSSF model signing).',
    );
  return {
    payloadType: b.dsseEnvelope.payloadType,
    payload: b.dsseEnvelope.payload,
    signatures: b.dsseEnvelope.signatures.map((s) => ({ keyid: s.keyid ?? '', sig: s.sig })),
  };
}
