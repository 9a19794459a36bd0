/**
 * Two rules of the audit API beside the log's own routes (audit.ts): who may append which event
 * type by hand (event-type authority), and `GET /v1/audit/entries`, the filtered, paged list of
 * signed entries.
 */
import type { FastifyInstance } from 'fastify';
import { EdgeguardError } from '../../errors/index.ts';
import {
  AUDIT_EVENT_TYPES,
  decodeLogLeaf,
  mayRecord,
  type AuditEventType,
  type AuditLog,
  type LogLeaf,
} from '../../audit/index.ts';
import type { ControlPlaneContext } from '../context.ts';
import { ERROR_SCHEMA } from '../errors.ts';

const errors = { 400: ERROR_SCHEMA, 401: ERROR_SCHEMA, 403: ERROR_SCHEMA, 404: ERROR_SCHEMA, 500: ERROR_SCHEMA };

/** Event-type authority (EVENT_AUTHORITY in audit/events.ts): what an admin may append by hand. */
export function refuseOutsideAdminAuthority(type: unknown): void {
  if (typeof type !== 'string' || !(AUDIT_EVENT_TYPES as string[]).includes(type)) return; // left to the schema (400)
  if (mayRecord(type as AuditEventType, 'operator')) return;
  const allowed = AUDIT_EVENT_TYPES.filter((t) => mayRecord(t, 'operator'));
  throw new EdgeguardError(
    'EG_FORBIDDEN',
    `an admin may not append ${type} events: they come only from a device's journal or the control plane itself. Admins append ${allowed.join(', ')}.`,
    { details: { reason: 'event_type_authority' } },
  );
}

/** At most this many entries are read per list request, whatever the filters keep: a bounded cost. */
const LIST_SCAN_MAX = 5000;

const LIST_QUERY = {
  type: 'object',
  additionalProperties: false,
  properties: {
    type: { type: 'string', enum: AUDIT_EVENT_TYPES },
    device: { type: 'string', pattern: '^dev-[0-9a-f]{16}$' },
    since: { type: 'string', format: 'date-time' },
    until: { type: 'string', format: 'date-time' },
    after: { type: 'string', pattern: '^(0|[1-9][0-9]{0,15})$' },
    limit: { type: 'string', pattern: '^([1-9][0-9]{0,2}|1000)$' },
  },
} as const;

interface ListQuery {
  type?: string;
  device?: string;
  since?: string;
  until?: string;
  after?: string;
  limit?: string;
}

/** Whether an entry passes the list filters: its type, its device (origin or subject), its event time. */
function matchesList(leaf: LogLeaf, q: ListQuery): boolean {
  const e = leaf.event;
  if (q.type !== undefined && e.type !== q.type) return false;
  if (q.device !== undefined) {
    const fromDevice = leaf.origin.kind === 'device' && leaf.origin.device.deviceId === q.device;
    if (!fromDevice && e.subject !== q.device) return false;
  }
  const t = Date.parse(e.time);
  if (q.since !== undefined && t < Date.parse(q.since)) return false;
  if (q.until !== undefined && t > Date.parse(q.until)) return false;
  return true;
}

/**
 * GET /v1/audit/entries: the signed entries (up to the latest checkpoint, so each one listed can
 * be proven) after index `after`, filtered, `limit` at most; `next` is the index to continue
 * after, null at the end. Each request reads at most LIST_SCAN_MAX entries.
 */
export function registerAuditListRoute(app: FastifyInstance, ctx: ControlPlaneContext, log: AuditLog): void {
  app.get(
    '/v1/audit/entries',
    {
      onRequest: ctx.requireAdmin,
      schema: {
        tags: ['audit'],
        summary:
          'List signed log entries with filters (type, device, since/until on the event time) and paging (after, limit; next in the answer)',
        security: [{ adminCertificate: [] }],
        querystring: LIST_QUERY,
        response: {
          200: {
            type: 'object',
            properties: {
              entries: {
                type: 'array',
                // The entry's index and its leaf (v, event, origin, loggedAt; docs/formats.md).
                items: { type: 'object', additionalProperties: true, properties: { index: { type: 'integer' } } },
              },
              next: { type: ['integer', 'null'] },
            },
          },
          ...errors,
        },
      },
    },
    async (req) => {
      const q = req.query as ListQuery;
      const limit = q.limit === undefined ? 100 : Number(q.limit);
      const size = (await log.latestCheckpoint())?.size ?? 0;
      const start = q.after === undefined ? 0 : Number(q.after) + 1;
      const end = Math.min(size, start + LIST_SCAN_MAX);
      const entries: Array<{ index: number; leaf: LogLeaf }> = [];
      let index = start;
      // Read in batches of 256 entries (one query each); stop at the limit or the scan bound.
      while (index < end && entries.length < limit) {
        const batch = await log.getEntries(index, Math.min(end, index + 256));
        for (const text of batch) {
          const leaf = decodeLogLeaf(Buffer.from(text, 'utf8'));
          if (matchesList(leaf, q)) entries.push({ index, leaf });
          index++;
          if (entries.length === limit) break;
        }
      }
      return {
        entries: entries.map((e) => ({ index: e.index, ...e.leaf })),
        next: index < size ? index - 1 : null,
      };
    },
  );
}
