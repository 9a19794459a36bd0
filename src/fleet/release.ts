/**
 * The release director's wire contract (server routes in src/server/routes/director.ts): an
 * operator's assignment, the operator's status view, and the device's signed version report.
 *
 * A version report is a DSSE envelope (as src/crypto/dsse.ts) whose payload is the JSON below,
 * signed by the key of the device certificate the report is sent with; its nonce comes from the
 * control plane (POST /v1/director/nonce) and is spent once, so a report cannot be replayed.
 * Layout: docs/formats.md, "Version report".
 */
import type { KeyObject } from 'node:crypto';
import { z } from 'zod';
import { parseEnvelope, signEnvelope, verifyEnvelope, type SigningKeyPair } from '../crypto/index.ts';
import { EdgeguardError } from '../errors/index.ts';
import { DEVICE_ID_RE } from '../pki/index.ts';
import type { FleetClient } from './client.ts';

export const RELEASE_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const releaseName = z.string().regex(RELEASE_NAME_RE);
const version = z
  .number()
  .int()
  .min(0)
  .max(2 ** 31 - 1);
const deviceId = z.string().regex(DEVICE_ID_RE);
const groupName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/);
const nonceHex = z.string().regex(/^[0-9a-f]{64}$/);

export const AssignRequest = z
  .strictObject({
    release: releaseName,
    version,
    device: deviceId.optional(),
    group: groupName.optional(),
    /** Only part of the group gets it first: ceil(percent * members / 100), at least one. */
    canaryPercent: z.number().int().min(1).max(100).optional(),
    /** The rollout halts itself when more than this many of its devices report a failed install. */
    maxFailures: z.number().int().min(0).max(100000).optional(),
    /** The release's content key (43 base64url characters), needed the first time a release is assigned. */
    contentKey: z
      .string()
      .regex(/^[A-Za-z0-9_-]{43}$/)
      .optional(),
  })
  .refine((r) => (r.device === undefined) !== (r.group === undefined), {
    message: 'name exactly one of device or group',
  });
export type AssignRequest = z.infer<typeof AssignRequest>;

export const Assignment = z.strictObject({
  id: z.string(),
  release: z.string(),
  version: z.number(),
  targetPath: z.string(),
  scope: z.enum(['device', 'group']),
  target: z.string(),
  canaryPercent: z.number().optional(),
  canaryDevices: z.array(z.string()).optional(),
  maxFailures: z.number(),
  state: z.enum(['active', 'halted']),
  assignedBy: z.string(),
  assignedAt: z.string(),
  haltedAt: z.string().optional(),
  haltReason: z.string().optional(),
});
export type Assignment = z.infer<typeof Assignment>;

export const DeviceReleaseStatus = z.strictObject({
  deviceId: z.string(),
  release: z.string(),
  assigned: z
    .strictObject({ version: z.number(), assignment: z.string(), state: z.enum(['active', 'halted']) })
    .optional(),
  installed: z.number().optional(),
  lastReport: z
    .strictObject({
      version: z.number(),
      status: z.enum(['installed', 'failed']),
      at: z.string(),
      detail: z.string().optional(),
    })
    .optional(),
  failures: z.number(),
});
export type DeviceReleaseStatus = z.infer<typeof DeviceReleaseStatus>;

export const ReleaseStatusResponse = z.strictObject({
  assignments: z.array(Assignment),
  devices: z.array(DeviceReleaseStatus),
});
export type ReleaseStatusResponse = z.infer<typeof ReleaseStatusResponse>;

export const VERSION_REPORT_TYPE = 'edgeguard-version-report';
export const VERSION_REPORT_PAYLOAD_TYPE = 'application/vnd.edgeguard.version-report+json';
/** A report envelope is a few hundred bytes; this bounds what the route parses. */
export const MAX_VERSION_REPORT_BYTES = 16 * 1024;

export const VersionReport = z.strictObject({
  type: z.literal(VERSION_REPORT_TYPE),
  deviceId,
  nonce: nonceHex,
  release: releaseName,
  version,
  status: z.enum(['installed', 'failed']),
  detail: z.string().max(2000).optional(),
  time: z.iso.datetime({ offset: false }),
});
export type VersionReport = z.infer<typeof VersionReport>;

export const ReportNonce = z.strictObject({ nonce: nonceHex, expiresAt: z.string() });
export type ReportNonce = z.infer<typeof ReportNonce>;

export const ReportRequest = z.strictObject({ envelope: z.string().min(1).max(MAX_VERSION_REPORT_BYTES) });

export function signVersionReport(report: VersionReport, deviceKey: SigningKeyPair): string {
  const payload = Buffer.from(JSON.stringify(VersionReport.parse(report)), 'utf8');
  return JSON.stringify(signEnvelope(VERSION_REPORT_PAYLOAD_TYPE, payload, deviceKey));
}

/** The report inside `envelopeText`, once it verifies under the device certificate's public key. */
export function verifyVersionReport(envelopeText: string, devicePublicKey: KeyObject): VersionReport {
  const { payload } = verifyEnvelope(parseEnvelope(envelopeText), [devicePublicKey], VERSION_REPORT_PAYLOAD_TYPE);
  let json: unknown;
  try {
    json = JSON.parse(payload.toString('utf8'));
  } catch (e) {
    throw new EdgeguardError('EG_FORMAT', 'the version report is not JSON.', { cause: e });
  }
  const r = VersionReport.safeParse(json);
  if (!r.success)
    throw new EdgeguardError(
      'EG_FORMAT',
      `the version report is invalid (${r.error.issues[0]?.path.join('.') || 'root'}: ${r.error.issues[0]?.message}).`,
    );
  return r.data;
}

/** Device side: ask for a nonce, sign the report with the device certificate's key, send it. */
export async function reportInstalledVersion(
  client: FleetClient,
  deviceKey: SigningKeyPair,
  report: Omit<VersionReport, 'type' | 'nonce' | 'time'>,
): Promise<void> {
  const n = ReportNonce.parse((await client.call('POST', '/v1/director/nonce', {})).body);
  const envelope = signVersionReport(
    { type: VERSION_REPORT_TYPE, nonce: n.nonce, time: new Date().toISOString(), ...report },
    deviceKey,
  );
  await client.call('POST', '/v1/director/reports', { envelope });
}
