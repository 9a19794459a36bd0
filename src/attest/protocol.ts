/**
 * The enrollment protocol's messages (JSON over HTTPS; docs/formats.md describes them field by
 * field). One zod schema per message is the single source of truth: the server validates bodies
 * with it, publishes it in OpenAPI (as JSON Schema), and the agent builds its requests from the
 * same types. Binary fields are standard base64; PEM fields are PEM text.
 *
 *   POST /v1/enroll/nonce   -> NonceResponse
 *   POST /v1/enroll/start   TpmEnrollStart | SoftwareEnrollStart
 *                           -> ChallengeResponse (tpm) | EnrollFinished (software)
 *   POST /v1/enroll/finish  EnrollFinish -> EnrollFinished
 *   GET  /v1/enroll/{id}/certificate  (header x-edgeguard-poll-token) -> 202 pending | CertificateResponse
 */
import { z } from 'zod';
import { DEVICE_ID_RE } from '../pki/index.ts';

const b64 = (max: number) =>
  z
    .string()
    .min(4)
    .max(Math.ceil(max / 3) * 4 + 4)
    .regex(/^[A-Za-z0-9+/]+={0,2}$/, 'must be standard base64');

const pem = (label: string, max: number) =>
  z
    .string()
    .max(max)
    .regex(new RegExp(`-----BEGIN ${label}-----`), `must be PEM (${label})`);

export const NONCE_BYTES = 32;
export const CREDENTIAL_BYTES = 32;

export const NonceResponse = z.object({ nonce: z.string(), expiresAt: z.string() }).strict();
export type NonceResponse = z.infer<typeof NonceResponse>;

const nonceField = z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'must be the 32-byte base64url nonce from /v1/enroll/nonce');
const labelField = z
  .string()
  .min(1)
  .max(100)
  .regex(/^[\w .:@/-]+$/, 'letters, digits, space and . : @ / - _ only')
  .optional();

export const TpmEnrollStart = z
  .object({
    keyProvider: z.literal('tpm'),
    nonce: nonceField,
    /** EK certificate, DER. Absent only when the EK hash is on the server's auto-approve list. */
    ekCertificate: b64(4096).optional(),
    /** Intermediate CA certificates (DER) that help chain the EK certificate; never trusted alone. */
    ekChain: z.array(b64(4096)).max(4).optional(),
    /** TPM2B_PUBLIC of the EK, AK and binding key. */
    ekPublic: b64(1024),
    akPublic: b64(1024),
    bindingPublic: b64(1024),
    /** TPM2_Certify of the binding key by the AK: TPMS_ATTEST and TPMT_SIGNATURE. */
    certifyInfo: b64(1024),
    certifySignature: b64(1024),
    /** PKCS#10 request for the device's TLS client key (ECDSA P-256). */
    csr: pem('CERTIFICATE REQUEST', 8192),
    label: labelField,
  })
  .strict();
export type TpmEnrollStart = z.infer<typeof TpmEnrollStart>;

export const SoftwareEnrollStart = z
  .object({
    keyProvider: z.literal('software'),
    nonce: nonceField,
    /** PKCS#10 request whose challengePassword attribute is the nonce (fresh proof of possession). */
    csr: pem('CERTIFICATE REQUEST', 8192),
    label: labelField,
  })
  .strict();
export type SoftwareEnrollStart = z.infer<typeof SoftwareEnrollStart>;

export const EnrollStart = z.discriminatedUnion('keyProvider', [TpmEnrollStart, SoftwareEnrollStart]);
export type EnrollStart = z.infer<typeof EnrollStart>;

export const ChallengeResponse = z
  .object({
    challengeId: z.string(),
    /** tpm2-tools credential file form (0xBADCC0DE, 1, TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET), base64. */
    credentialBlob: z.string(),
    expiresAt: z.string(),
  })
  .strict();
export type ChallengeResponse = z.infer<typeof ChallengeResponse>;

export const EnrollFinish = z
  .object({
    challengeId: z.string().regex(/^[A-Za-z0-9_-]{32}$/, 'must be the challengeId from /v1/enroll/start'),
    /** The credential TPM2_ActivateCredential released, base64. */
    credential: b64(64),
  })
  .strict();
export type EnrollFinish = z.infer<typeof EnrollFinish>;

/** A fleet device id (`dev-` and 16 hex digits): the device puts it in URL paths and file names. */
const DeviceId = z.string().regex(DEVICE_ID_RE, 'must be a fleet device id (dev- and 16 hex digits)');

export const EnrollFinished = z
  .object({
    deviceId: DeviceId,
    status: z.enum(['pending', 'approved']),
    keyProvider: z.enum(['tpm', 'software']),
    /** Secret for polling the certificate; shown once, stored only as a hash on the server. */
    pollToken: z.string(),
  })
  .strict();
export type EnrollFinished = z.infer<typeof EnrollFinished>;

export const CertificateResponse = z
  .object({
    deviceId: DeviceId,
    /** Device certificate followed by the issuing CA, PEM. */
    certificateChain: z.string(),
    /** The fleet root, PEM (what the agent pins). */
    fleetCa: z.string(),
    notAfter: z.string(),
  })
  .strict();
export type CertificateResponse = z.infer<typeof CertificateResponse>;

export const RenewRequest = z.object({ csr: pem('CERTIFICATE REQUEST', 8192) }).strict();
export type RenewRequest = z.infer<typeof RenewRequest>;

/** JSON Schema (draft-07, what fastify's validator and OpenAPI 3.0 speak) for a zod schema. */
export function jsonSchemaOf(schema: z.ZodType): Record<string, unknown> {
  const js = z.toJSONSchema(schema, { target: 'draft-7', io: 'input' }) as Record<string, unknown>;
  delete js.$schema;
  return js;
}
