/**
 * DSSE (Dead Simple Signing Envelope, secure-systems-lab/dsse v1.0) signing and verification.
 * The signature covers PAE(payloadType, payload) = "DSSEv1" SP len(type) SP type SP len(body) SP body,
 * lengths in ASCII decimal. ECDSA signatures are DER-encoded (as sigstore and OMS write them),
 * Ed25519 signatures are the raw 64 bytes.
 */
import { sign, verify, type KeyObject } from 'node:crypto';
import { z } from 'zod';
import { EdgeguardError } from '../errors/index.ts';
import { fromB64 } from './encoding.ts';
import { bundleToEnvelope, isSigstoreBundle } from './sigstore-bundle.ts';
import { publicKeyId, signingAlgorithmOf, type SigningKeyPair } from './signing-key.ts';

export const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';

export interface DsseEnvelope {
  payloadType: string;
  payload: string;
  signatures: Array<{ keyid: string; sig: string }>;
}

const envelopeSchema = z.object({
  payloadType: z.string().min(1).max(256),
  payload: z.string().max(16 * 1024 * 1024),
  signatures: z
    .array(z.object({ keyid: z.string().max(256).default(''), sig: z.string().min(1).max(4096) }))
    .min(1)
    .max(16),
});

/** DSSE section "Protocol": the pre-authentication encoding. */
export function pae(payloadType: string, payload: Uint8Array): Buffer {
  const type = Buffer.from(payloadType, 'utf8');
  return Buffer.concat([Buffer.from(`DSSEv1 ${type.length} `), type, Buffer.from(` ${payload.length} `), payload]);
}

export function signEnvelope(payloadType: string, payload: Uint8Array, key: SigningKeyPair): DsseEnvelope {
  const message = pae(payloadType, payload);
  const sig =
    signingAlgorithmOf(key.privateKey) === 'ed25519'
      ? sign(null, message, key.privateKey)
      : sign('sha256', message, key.privateKey);
  return {
    payloadType,
    payload: Buffer.from(payload).toString('base64'),
    signatures: [{ keyid: key.keyId, sig: sig.toString('base64') }],
  };
}

export function parseEnvelope(text: string): DsseEnvelope {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new EdgeguardError(
      'EG_SIGNATURE_INVALID',
      'the signature file is not JSON; expected a DSSE envelope (NAME.egm.sig.json).',
    );
  }
  // A Sigstore bundle (model_signing, cosign) carries the same envelope: take it from there.
  if (isSigstoreBundle(json)) return bundleToEnvelope(json);
  const parsed = envelopeSchema.safeParse(json);
  if (!parsed.success) {
    throw new EdgeguardError(
      'EG_SIGNATURE_INVALID',
      `the signature file is not a DSSE envelope (${parsed.error.issues[0]?.path.join('.') || 'root'}: ${parsed.error.issues[0]?.message}).`,
    );
  }
  return parsed.data;
}

/**
 * Verify that at least one signature in the envelope was made by one of `trusted` keys.
 * Returns the payload bytes and the id of the key that verified.
 */
export function verifyEnvelope(
  envelope: DsseEnvelope,
  trusted: KeyObject[],
  expectedType: string,
): { payload: Buffer; keyId: string } {
  if (envelope.payloadType !== expectedType) {
    throw new EdgeguardError(
      'EG_SIGNATURE_INVALID',
      `the envelope carries "${envelope.payloadType}", expected "${expectedType}".`,
    );
  }
  const payload = fromB64(envelope.payload);
  if (!payload) throw new EdgeguardError('EG_SIGNATURE_INVALID', 'the envelope payload is not valid base64.');
  const message = pae(envelope.payloadType, payload);
  for (const key of trusted) {
    const alg = signingAlgorithmOf(key);
    for (const s of envelope.signatures) {
      const sig = fromB64(s.sig);
      if (!sig) continue;
      let ok = false;
      try {
        ok = alg === 'ed25519' ? verify(null, message, key, sig) : verify('sha256', message, key, sig);
      } catch {
        ok = false;
      }
      if (ok) return { payload, keyId: publicKeyId(key) };
    }
  }
  throw new EdgeguardError(
    'EG_SIGNATURE_INVALID',
    'no signature in the envelope verifies with the given public key; the package was signed by someone else or the statement was edited.',
  );
}
