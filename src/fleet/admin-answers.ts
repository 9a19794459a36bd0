/**
 * What the control plane answers the operator's CLI, as schemas: the answers are checked before any
 * member is printed, compared or used in a file name, so a broken or compromised control plane (or a
 * mismatched release) gives EG_SERVER with a sentence, never a TypeError, a wrong exit status or a
 * path the server chose. Members a later release adds are kept as they are (shown by --json), not refused.
 */
import { z } from 'zod';
import { DEVICE_ID_RE } from '../pki/index.ts';
import { DEVICE_STATUSES } from './device-view.ts';

const nullableString = z.string().nullable();

/** A device record as the API shows it (DEVICE_VIEW_SCHEMA is the server's side of the same shape). */
export const DeviceViewAnswer = z.looseObject({
  id: z.string().regex(DEVICE_ID_RE, 'must be a fleet device id'),
  status: z.enum(DEVICE_STATUSES as [string, ...string[]]),
  keyProvider: z.enum(['tpm', 'software']),
  softwareBound: z.boolean(),
  label: nullableString,
  ekPubSha256: z.string(),
  ekCertificate: z.boolean(),
  akName: z.string(),
  createdAt: z.string(),
  approvedAt: nullableString,
  approvedBy: nullableString,
  revokedAt: nullableString,
  tamperedAt: nullableString,
  lastSeenAt: nullableString,
});

export const DeviceListAnswer = z.looseObject({ devices: z.array(DeviceViewAnswer) });

export const DeviceRevokeAnswer = z.looseObject({ device: DeviceViewAnswer, revokedSerials: z.array(z.string()) });

export const CertificateRevokeAnswer = z.looseObject({ serial: z.string(), role: z.string(), revokedAt: z.string() });

/** A review item's id: 32 hex digits (it becomes part of a file name in `review fetch`). */
const ReviewItemId = z.string().regex(/^[0-9a-f]{32}$/, 'must be 32 lowercase hex digits');

export const ReviewPageAnswer = z.looseObject({
  items: z.array(
    z.looseObject({
      id: ReviewItemId,
      createdMs: z.number().int().nonnegative(),
      deviceId: z.string().regex(DEVICE_ID_RE, 'must be a fleet device id'),
      receivedAt: z.string(),
    }),
  ),
});

export const ReviewItemAnswer = z.looseObject({ id: ReviewItemId, item: z.string() });

export const AuditEntriesAnswer = z.looseObject({
  entries: z.array(
    z.looseObject({
      index: z.number().int().nonnegative(),
      event: z.looseObject({
        type: z.string(),
        time: z.string(),
        outcome: z.string(),
        subject: z.string().optional(),
      }),
    }),
  ),
  next: z.number().int().nonnegative().nullable(),
});

export const AuditAppendAnswer = z.looseObject({ index: z.number().int().nonnegative() });

export const PolicyStoredAnswer = z.looseObject({
  sha256: z.string().regex(/^[0-9a-f]{64}$/, 'must be a SHA-256 in hex'),
});

export const DirectorKeysAnswer = z.looseObject({
  threshold: z.number().int().positive(),
  keys: z.array(
    z.looseObject({
      keyId: z.string(),
      pem: z.string().regex(/^-----BEGIN PUBLIC KEY-----\n/, 'must be a PEM public key'),
    }),
  ),
});

export const LoginLinkAnswer = z.looseObject({ url: z.url({ protocol: /^https?$/ }), expiresAt: z.string() });
