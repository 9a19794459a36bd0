/** What the API shows of a device record (never the poll-token hash or the raw CSR). */
import type { DeviceRecord, DeviceStatus } from '../store/index.ts';

export const DEVICE_STATUSES: readonly DeviceStatus[] = ['pending', 'approved', 'revoked', 'tampered'];

export interface DeviceView {
  id: string;
  status: string;
  keyProvider: string;
  /** True when the device's keys are not protected by a TPM (software key provider). */
  softwareBound: boolean;
  label: string | null;
  ekPubSha256: string;
  ekCertificate: boolean;
  akName: string;
  createdAt: string;
  approvedAt: string | null;
  approvedBy: string | null;
  revokedAt: string | null;
  /** When the device reported physical tampering (status `tampered`). */
  tamperedAt: string | null;
  lastSeenAt: string | null;
}

export function deviceView(d: DeviceRecord): DeviceView {
  return {
    id: d.id,
    status: d.status,
    keyProvider: d.key_provider,
    softwareBound: d.key_provider === 'software',
    label: d.label,
    ekPubSha256: d.ek_pub_sha256,
    ekCertificate: d.ek_cert_pem !== null,
    akName: d.ak_name,
    createdAt: d.created_at,
    approvedAt: d.approved_at,
    approvedBy: d.approved_by,
    revokedAt: d.revoked_at,
    tamperedAt: d.tampered_at,
    lastSeenAt: d.last_seen_at,
  };
}

export const DEVICE_VIEW_SCHEMA = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    status: { type: 'string', enum: [...DEVICE_STATUSES] },
    keyProvider: { type: 'string', enum: ['tpm', 'software'] },
    softwareBound: { type: 'boolean' },
    label: { type: ['string', 'null'] },
    ekPubSha256: { type: 'string' },
    ekCertificate: { type: 'boolean' },
    akName: { type: 'string' },
    createdAt: { type: 'string' },
    approvedAt: { type: ['string', 'null'] },
    approvedBy: { type: ['string', 'null'] },
    revokedAt: { type: ['string', 'null'] },
    tamperedAt: { type: ['string', 'null'] },
    lastSeenAt: { type: ['string', 'null'] },
  },
} as const;
