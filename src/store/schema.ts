/**
 * The control plane's tables, as kysely sees them. Timestamps are ISO 8601 UTC strings
 * (`Date.prototype.toISOString`, fixed width) so that they sort and compare the same way on SQLite
 * and PostgreSQL; binary values are base64 or lowercase hex text for the same reason.
 *
 * Other modules' tables are created by the same migration list (migrations.ts) and typed by their
 * module with `db.withTables<TheirTables>()` on the `StoreDb` they are given.
 */
import type { Kysely } from 'kysely';

/** `tampered`: the device reported physical tampering; its certificates are revoked as with `revoked`. */
export type DeviceStatus = 'pending' | 'approved' | 'revoked' | 'tampered';
export type KeyProvider = 'tpm' | 'software';
export type CertificateRole = 'device' | 'admin' | 'server';

export interface DevicesTable {
  id: string;
  /** SHA-256 of the EK public key (SubjectPublicKeyInfo DER), lowercase hex: the device's identity. */
  ek_pub_sha256: string;
  ek_cert_pem: string | null;
  /** TPMT_PUBLIC of the AK, base64. */
  ak_public: string;
  /** TPM2B_NAME payload (nameAlg || digest) of the AK, lowercase hex. */
  ak_name: string;
  /** TPMT_PUBLIC of the TPM-resident binding key, base64 (empty for software-bound devices). */
  binding_public: string;
  key_provider: KeyProvider;
  status: DeviceStatus;
  label: string | null;
  csr_pem: string;
  /** SHA-256 of the one-time token the agent polls for its certificate with, hex. */
  poll_token_sha256: string;
  created_at: string;
  approved_at: string | null;
  approved_by: string | null;
  revoked_at: string | null;
  /** When the device's journal reported tampering (migration control-plane/0002_tampered). */
  tampered_at: string | null;
  last_seen_at: string | null;
}

export interface CertificatesTable {
  /** Certificate serial number, lowercase hex without leading zeros stripped (as issued). */
  serial: string;
  device_id: string | null;
  role: CertificateRole;
  subject: string;
  not_before: string;
  not_after: string;
  pem: string;
  issued_at: string;
  revoked_at: string | null;
  revocation_reason: string | null;
}

export type ChallengeKind = 'nonce' | 'credential';

export interface EnrollmentChallengesTable {
  id: string;
  kind: ChallengeKind;
  /** For 'credential': SHA-256 of the secret wrapped by MakeCredential, hex. For 'nonce': the nonce. */
  value: string;
  /** For 'credential': the validated enrollment request (JSON) kept until the answer arrives. */
  payload: string | null;
  created_at: string;
  expires_at: string;
  used_at: string | null;
}

export interface ControlPlaneTables {
  devices: DevicesTable;
  certificates: CertificatesTable;
  enrollment_challenges: EnrollmentChallengesTable;
}

/** The Kysely instance every module receives; extend with `db.withTables<YourTables>()`. */
export type StoreDb = Kysely<ControlPlaneTables>;
