/**
 * The one schema of every security event edgeguard records, and the canonical bytes that go into
 * the Merkle log. Canonical JSON here is RFC 8785 (JCS) restricted to what events contain:
 * objects with keys sorted by UTF-16 code units, no insignificant white space, strings escaped
 * as JSON.stringify does, and only safe integers as numbers (no floats, so number formatting
 * cannot differ between implementations).
 */
import { z } from 'zod';
import { EdgeguardError } from '../errors/index.ts';

const id = z.string().min(1).max(200);
const hex = (bytes: number) => z.string().regex(new RegExp(`^[0-9a-f]{${bytes * 2}}$`));
const short = z.string().max(2000);
const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
/** Fixed-point scores: value * 1e6 rounded, so that no float enters a leaf. */
const micro = z.number().int().min(-1e12).max(1e12);

/** Who caused the event. */
export const actorSchema = z.strictObject({
  kind: z.enum(['device', 'admin', 'server', 'operator']),
  id,
});

const base = {
  /** When it happened, ISO 8601 UTC with milliseconds (as the reporter's clock saw it). */
  time: z.iso.datetime({ offset: false, precision: 3 }),
  actor: actorSchema,
  /** What it is about: a device id, release id, model digest, certificate serial. */
  subject: id.optional(),
  outcome: z.enum(['success', 'failure', 'denied']),
};

function event<T extends string, D extends z.ZodRawShape>(type: T, details: D) {
  return z.strictObject({ ...base, type: z.literal(type), details: z.strictObject(details) });
}

export const auditEventSchema = z.discriminatedUnion('type', [
  event('device.enrollment_requested', { deviceId: id, ekSha256: hex(32), keyProvider: z.enum(['tpm', 'software']) }),
  event('device.approved', { deviceId: id, approvedBy: id }),
  event('device.rejected', { deviceId: id, reason: short }),
  event('device.revoked', { deviceId: id, reason: short, revokedSerials: z.array(id).max(1000) }),
  event('cert.issued', {
    serial: id,
    role: z.enum(['device', 'admin', 'server']),
    subjectDn: short,
    notAfter: z.iso.datetime(),
  }),
  // codes: every failed check's code, in the verdict's order; events: REBOOT/RESTART since the last accepted quote.
  event('attestation.result', {
    deviceId: id,
    verified: z.boolean(),
    pcrDigest: hex(32).optional(),
    codes: z.array(id).max(64).optional(),
    reason: short.optional(),
    events: z.array(id).max(8).optional(),
  }),
  event('release.published', { releaseId: id, modelSha256: hex(32), version: id }),
  event('release.installed', { releaseId: id, deviceId: id, version: id }),
  event('release.rejected', { releaseId: id, deviceId: id, reason: short }),
  // keyProvider 'key-file': the content key came from a plain key file (development). version,
  // signerKeyId: the package's metadata version and the publisher key that signed it.
  event('model.loaded', {
    modelSha256: hex(32),
    name: id,
    keyProvider: z.enum(['tpm', 'software', 'key-file']),
    version: count.optional(),
    signerKeyId: id.optional(),
  }),
  event('model.load_failed', { modelSha256: hex(32).optional(), name: id, code: id }),
  // reasons: every reason code of the verdict; model: "name@version" and its package header digest.
  event('guard.flagged', {
    check: id,
    score: micro,
    threshold: micro,
    inputSha256: hex(32).optional(),
    queuedForReview: z.boolean().optional(),
    reasons: z.array(id).max(16).optional(),
    model: id.optional(),
    modelSha256: hex(32).optional(),
  }),
  event('guard.rejected', {
    check: id,
    score: micro,
    threshold: micro,
    inputSha256: hex(32).optional(),
    queuedForReview: z.boolean(),
    reasons: z.array(id).max(16).optional(),
    model: id.optional(),
    modelSha256: hex(32).optional(),
  }),
  // A client of the inference service refused for probing (src/guard/probing.ts): its query budget
  // spent, or a run of near-duplicate inputs. client: "cert:<subject CN>" or "addr:<address>".
  event('guard.probing', {
    client: id,
    reason: z.enum(['budget', 'near-duplicates']),
    neighbours: count,
    retryAfterS: count,
    model: id.optional(),
  }),
  event('review.item', { itemId: id, action: z.enum(['queued', 'uploaded', 'dropped']), reason: short.optional() }),
  event('cert.renewed', {
    previousSerial: id,
    serial: id.optional(),
    notAfter: z.iso.datetime().optional(),
    reason: short.optional(),
  }),
  event('agent.started', {
    configSha256: hex(32),
    guardProfileSha256: hex(32).optional(),
    keyProvider: z.enum(['tpm', 'software', 'key-file']),
    pid: count.optional(),
  }),
  event('agent.stopped', { reason: short, uptimeS: count }),
  event('tamper.detected', { sensor: id, detail: short }),
  event('device.locked', { reason: short }),
  event('egress.denied', { host: z.string().min(1).max(255), port: z.number().int().min(0).max(65535), reason: short }),
  event('admin.action', { action: id, target: id.optional(), detail: short.optional() }),
  event('policy.changed', { policy: id, previousSha256: hex(32).optional(), newSha256: hex(32) }),
  // Anonymous enrollment failures, summarised (at most one per summary interval) instead of one entry each.
  event('enroll.failures', {
    since: z.iso.datetime(),
    total: count,
    byReason: z.array(z.strictObject({ reason: id, count })).max(64),
    byAddress: z.array(z.strictObject({ address: id, count })).max(64),
    otherAddresses: count,
    ekSha256: z.array(hex(32)).max(64),
  }),
  // A device's signed checklist report as the control plane received it: the digest of the DSSE
  // envelope it stored, the score and the failing items (EG-01..EG-10).
  event('checklist.reported', {
    deviceId: id,
    envelopeSha256: hex(32),
    score: z.number().int().min(0).max(100),
    failing: z.array(z.string().regex(/^EG-(0[1-9]|10)$/)).max(10),
  }),
  event('audit.journal_gap', {
    deviceId: id,
    position: count,
    expectedSeq: count,
    foundSeq: count.optional(),
    reason: short,
  }),
]);

export type AuditEvent = z.infer<typeof auditEventSchema>;
export type AuditEventType = AuditEvent['type'];
export const AUDIT_EVENT_TYPES = auditEventSchema.options.map((o) => o.shape.type.value) as AuditEventType[];

/**
 * Event-type authority: who may put each type into the log. `device`: only from a device's signed
 * journal (guard verdicts, model loads, tamper, agent start and stop, releases it installs or
 * rejects); `control-plane`: only the control plane itself (enrollment, approvals, revocations,
 * certificates, journal gaps); `operator`: an admin through the API (policy changes, releases
 * published, attestation results from an outside verifier, admin actions). A record of another
 * party's type would be a forgery of that party's record, and is refused wherever it arrives.
 */
export type EventAuthority = 'device' | 'control-plane' | 'operator';

export const EVENT_AUTHORITY: Readonly<Record<AuditEventType, readonly EventAuthority[]>> = {
  'device.enrollment_requested': ['control-plane'],
  'device.approved': ['control-plane'],
  'device.rejected': ['control-plane'],
  'device.revoked': ['control-plane'],
  'cert.issued': ['control-plane'],
  'cert.renewed': ['device', 'control-plane'],
  'attestation.result': ['control-plane', 'operator'],
  'release.published': ['control-plane', 'operator'],
  'release.installed': ['device', 'control-plane'],
  'release.rejected': ['device', 'control-plane'],
  'model.loaded': ['device'],
  'model.load_failed': ['device'],
  'guard.flagged': ['device'],
  'guard.rejected': ['device'],
  'review.item': ['device', 'control-plane'],
  'agent.started': ['device'],
  'agent.stopped': ['device'],
  'tamper.detected': ['device'],
  'device.locked': ['device', 'control-plane'],
  'egress.denied': ['device'],
  'admin.action': ['control-plane', 'operator'],
  'policy.changed': ['control-plane', 'operator'],
  'enroll.failures': ['control-plane'],
  'audit.journal_gap': ['control-plane'],
  'checklist.reported': ['control-plane'],
  'guard.probing': ['device'],
};

/** Whether `by` may record an event of `type`. */
export function mayRecord(type: AuditEventType, by: EventAuthority): boolean {
  return EVENT_AUTHORITY[type].includes(by);
}

/** Validate an event from outside (API body, journal payload); fails closed with EG_FORMAT. */
export function parseAuditEvent(value: unknown, where = 'the audit event'): AuditEvent {
  const r = auditEventSchema.safeParse(value);
  if (!r.success) {
    const issue = r.error.issues[0];
    const path = issue?.path.join('.') ?? '';
    throw new EdgeguardError(
      'EG_FORMAT',
      `${where} is invalid${path ? ` at ${path}` : ''}: ${issue?.message ?? 'schema mismatch'}.`,
      { details: { issues: r.error.issues.slice(0, 5) } },
    );
  }
  return r.data;
}

/**
 * RFC 8785 canonical JSON of plain data (objects, arrays, strings, booleans, null, safe
 * integers). Anything else (floats, undefined in arrays, bigint, class instances) is refused so a
 * leaf can always be recomputed byte for byte by another implementation.
 */
export function canonicalJson(value: unknown): string {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      if (!Number.isSafeInteger(value))
        throw new EdgeguardError('EG_FORMAT', `canonical JSON only carries safe integers, not ${value}.`);
      return String(value);
    case 'object': {
      if (value === null) return 'null';
      if (Array.isArray(value)) {
        let out = '[';
        for (let i = 0; i < value.length; i++) out += (i > 0 ? ',' : '') + canonicalJson(value[i]);
        return out + ']';
      }
      const proto = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) break;
      const obj = value as Record<string, unknown>;
      // Default sort compares UTF-16 code units, which is what RFC 8785 orders keys by.
      const keys = Object.keys(obj).sort();
      let out = '{';
      let first = true;
      for (const k of keys) {
        const v = obj[k];
        if (v === undefined) continue;
        out += (first ? '' : ',') + JSON.stringify(k) + ':' + canonicalJson(v);
        first = false;
      }
      return out + '}';
    }
  }
  throw new EdgeguardError('EG_FORMAT', `canonical JSON cannot carry a ${typeof value}.`);
}

export function canonicalEventBytes(event: AuditEvent): Buffer {
  return Buffer.from(canonicalJson(event), 'utf8');
}

/** A device event as it came out of the device's journal: enough to re-check its signature. */
export const deviceOriginSchema = z.strictObject({
  deviceId: id,
  seq: count,
  /** Previous journal entry hash, hex. */
  prev: hex(32),
  /** Journal entry time, ms since the epoch. */
  timeMs: count,
  /** 'ed25519' or 'ecdsa-p256'. */
  alg: z.enum(['ed25519', 'ecdsa-p256']),
  /** Signature over the journal entry hash, base64. */
  sig: z
    .string()
    .regex(/^[A-Za-z0-9+/]+={0,2}$/)
    .max(200),
});
export type DeviceOrigin = z.infer<typeof deviceOriginSchema>;

/**
 * One leaf of the server log: format version 1, the event, where it came from (the server
 * itself, or a device journal entry), and when the server sequenced it.
 */
export const logLeafSchema = z.strictObject({
  v: z.literal(1),
  event: auditEventSchema,
  origin: z.union([
    z.strictObject({ kind: z.literal('server') }),
    z.strictObject({ kind: z.literal('device'), device: deviceOriginSchema }),
  ]),
  loggedAt: z.iso.datetime({ offset: false, precision: 3 }),
});
export type LogLeaf = z.infer<typeof logLeafSchema>;

/** The exact bytes of a leaf: canonical JSON, UTF-8. Its Merkle leaf hash is SHA-256(0x00 || these). */
export function encodeLogLeaf(leaf: LogLeaf): Buffer {
  return Buffer.from(canonicalJson(leaf), 'utf8');
}

/** Parse leaf bytes from a store or a peer; they must be canonical (re-encode to the same bytes). */
export function decodeLogLeaf(bytes: Uint8Array): LogLeaf {
  let value: unknown;
  const text = Buffer.from(bytes).toString('utf8');
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new EdgeguardError('EG_FORMAT', 'the log entry is not JSON.', { cause: e });
  }
  const r = logLeafSchema.safeParse(value);
  if (!r.success)
    throw new EdgeguardError(
      'EG_FORMAT',
      `the log entry does not match the leaf schema (${r.error.issues[0]?.message ?? 'mismatch'}).`,
    );
  if (!encodeLogLeaf(r.data).equals(Buffer.from(bytes)))
    throw new EdgeguardError('EG_FORMAT', 'the log entry is not in canonical form.');
  return r.data;
}
