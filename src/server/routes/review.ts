/**
 * The review queue on the control plane (a server plugin, see ../README-extending.md). Devices
 * deliver sealed review items; the server checks their outer layout and stores them as they are,
 * still encrypted to the operators' review key (it holds no key that opens them). Operators fetch
 * them with an admin certificate (`edgeguard review fetch`) and open them offline.
 *
 *   POST /v1/review/items        device  { id, item: base64 }  -> { id, stored }   (idempotent)
 *   GET  /v1/review/items        admin   ?after=ID&limit=N     -> { items: [{ id, deviceId, keyId, createdMs, receivedAt, bytes }] }
 *   GET  /v1/review/items/:id    admin   -> { id, deviceId, item: base64 }
 *   POST /v1/review/items/:id/ack  admin -> { id, acknowledged }   (the operator has it: removed here)
 *
 * Retention: items received more than `retentionDays` ago (default 90) are pruned, at start and
 * then every `pruneIntervalMs` (default an hour), so unacknowledged evidence does not pile up.
 */
import type { FastifyInstance } from 'fastify';
import type { Kysely } from 'kysely';
import { EdgeguardError } from '../../errors/index.ts';
import { MAX_SEALED_BYTES, REVIEW_HEADER_BYTES, parseReviewItem } from '../../fleet/index.ts';
import { ERROR_SCHEMA } from '../errors.ts';
import type { ServerPlugin } from '../plugins.ts';
import type { ControlPlaneContext } from '../context.ts';

/** Largest item the route takes (the body is base64, 4/3 larger). */
export const MAX_UPLOAD_ITEM_BYTES = 8 * 1024 * 1024;

/** Created by the store's migration list (src/store/migrations/review.ts). */
type ReviewTables = {
  review_items: {
    id: string;
    device_id: string;
    key_id: string;
    created_ms: number | string;
    received_at: string;
    size: number;
    item: string;
  };
};

const errors = { 400: ERROR_SCHEMA, 401: ERROR_SCHEMA, 403: ERROR_SCHEMA, 404: ERROR_SCHEMA, 413: ERROR_SCHEMA };
const ID = { type: 'string', pattern: '^[0-9a-f]{32}$' } as const;

export interface ReviewPluginOptions {
  /** Items received longer ago than this are pruned (days). */
  retentionDays?: number;
  /** How often the pruning runs (ms). */
  pruneIntervalMs?: number;
}

/** POST /v1/review/items/:id/ack: the operator has the item (fetched, stored): it leaves the server. */
function registerAcknowledge(app: FastifyInstance, ctx: ControlPlaneContext, db: Kysely<ReviewTables>): void {
  app.post(
    '/v1/review/items/:id/ack',
    {
      onRequest: ctx.requireAdmin,
      schema: {
        tags: ['review'],
        summary: 'acknowledge a fetched review item; the server no longer keeps it (admin certificate)',
        params: { type: 'object', required: ['id'], properties: { id: ID } },
        response: {
          200: { type: 'object', properties: { id: { type: 'string' }, acknowledged: { type: 'boolean' } } },
          ...errors,
        },
      },
    },
    async (req) => {
      const { id } = req.params as { id: string };
      const r = await db.deleteFrom('review_items').where('id', '=', id).executeTakeFirst();
      if (Number(r.numDeletedRows) === 0)
        throw new EdgeguardError('EG_NOT_FOUND', `no review item ${id} on the server (already acknowledged?).`);
      req.log.info({ item: id, by: req.identity?.name }, 'review item acknowledged');
      return { id, acknowledged: true };
    },
  );
}

export function reviewServerPlugin(o: ReviewPluginOptions = {}): ServerPlugin {
  const retentionMs = (o.retentionDays ?? 90) * 86_400_000;
  return {
    name: 'review',
    async register(app, ctx) {
      const db = ctx.store.db.withTables<ReviewTables>() as unknown as Kysely<ReviewTables>;
      const prune = async () => {
        // received_at is ISO 8601 UTC: string order is time order.
        const cutoff = new Date(Date.now() - retentionMs).toISOString();
        const r = await db.deleteFrom('review_items').where('received_at', '<', cutoff).executeTakeFirst();
        if (Number(r.numDeletedRows) > 0)
          ctx.log.info({ pruned: Number(r.numDeletedRows), cutoff }, 'review items past their retention pruned');
      };
      await prune();
      const timer = setInterval(
        () => void prune().catch((e: unknown) => ctx.log.error({ err: e }, 'pruning review items failed')),
        o.pruneIntervalMs ?? 3_600_000,
      );
      timer.unref();
      app.addHook('onClose', async () => clearInterval(timer));
      registerAcknowledge(app, ctx, db);

      app.post(
        '/v1/review/items',
        {
          onRequest: ctx.requireDevice,
          bodyLimit: Math.ceil((MAX_UPLOAD_ITEM_BYTES * 4) / 3) + 1024,
          schema: {
            tags: ['review'],
            summary: 'deliver one sealed review item (device certificate)',
            body: {
              type: 'object',
              required: ['id', 'item'],
              additionalProperties: false,
              properties: {
                id: ID,
                item: { type: 'string', maxLength: Math.ceil((MAX_UPLOAD_ITEM_BYTES * 4) / 3) + 4 },
              },
            },
            response: {
              200: { type: 'object', properties: { id: { type: 'string' }, stored: { type: 'boolean' } } },
              ...errors,
            },
          },
        },
        async (req) => {
          const body = req.body as { id: string; item: string };
          const bytes = Buffer.from(body.item, 'base64');
          if (bytes.length < REVIEW_HEADER_BYTES || bytes.length > Math.min(MAX_UPLOAD_ITEM_BYTES, MAX_SEALED_BYTES)) {
            throw new EdgeguardError(
              'EG_BAD_REQUEST',
              `a review item is ${REVIEW_HEADER_BYTES} to ${MAX_UPLOAD_ITEM_BYTES} bytes; got ${bytes.length}.`,
            );
          }
          let header;
          try {
            header = parseReviewItem(bytes, 'the review item');
          } catch (e) {
            throw new EdgeguardError('EG_BAD_REQUEST', (e as Error).message, { cause: e });
          }
          if (header.id !== body.id)
            throw new EdgeguardError('EG_BAD_REQUEST', `the item's id is ${header.id}, not ${body.id}.`);
          const deviceId = req.identity!.deviceId!;
          const existing = await db
            .selectFrom('review_items')
            .select(['device_id'])
            .where('id', '=', header.id)
            .executeTakeFirst();
          if (existing) {
            if (existing.device_id !== deviceId)
              throw new EdgeguardError('EG_FORBIDDEN', 'another device already delivered an item with this id.');
            return { id: header.id, stored: false };
          }
          await db
            .insertInto('review_items')
            .values({
              id: header.id,
              device_id: deviceId,
              key_id: header.recipientKeyId,
              created_ms: header.createdMs,
              received_at: new Date().toISOString(),
              size: bytes.length,
              item: bytes.toString('base64'),
            })
            .onConflict((oc) => oc.column('id').doNothing())
            .execute();
          req.log.info({ item: header.id, device: deviceId, bytes: bytes.length }, 'review item received (sealed)');
          return { id: header.id, stored: true };
        },
      );

      app.get(
        '/v1/review/items',
        {
          onRequest: ctx.requireAdmin,
          schema: {
            tags: ['review'],
            summary: 'list sealed review items (admin certificate)',
            querystring: {
              type: 'object',
              additionalProperties: false,
              properties: { after: ID, limit: { type: 'string', pattern: '^[1-9][0-9]{0,2}$|^1000$' } },
            },
            response: {
              200: {
                type: 'object',
                properties: {
                  items: {
                    type: 'array',
                    items: {
                      type: 'object',
                      properties: {
                        id: { type: 'string' },
                        deviceId: { type: 'string' },
                        keyId: { type: 'string' },
                        createdMs: { type: 'number' },
                        receivedAt: { type: 'string' },
                        bytes: { type: 'integer' },
                      },
                    },
                  },
                },
              },
              ...errors,
            },
          },
        },
        async (req) => {
          const q = req.query as { after?: string; limit?: string };
          let query = db
            .selectFrom('review_items')
            .select(['id', 'device_id', 'key_id', 'created_ms', 'received_at', 'size'])
            .orderBy('id')
            .limit(q.limit ? Number(q.limit) : 100);
          if (q.after) query = query.where('id', '>', q.after);
          const rows = await query.execute();
          return {
            items: rows.map((r) => ({
              id: r.id,
              deviceId: r.device_id,
              keyId: r.key_id,
              createdMs: Number(r.created_ms),
              receivedAt: r.received_at,
              bytes: r.size,
            })),
          };
        },
      );

      app.get(
        '/v1/review/items/:id',
        {
          onRequest: ctx.requireAdmin,
          schema: {
            tags: ['review'],
            summary: 'one sealed review item (admin certificate); still encrypted to the review key',
            params: { type: 'object', properties: { id: ID }, required: ['id'] },
            response: {
              200: {
                type: 'object',
                properties: { id: { type: 'string' }, deviceId: { type: 'string' }, item: { type: 'string' } },
              },
              ...errors,
            },
          },
        },
        async (req) => {
          const { id } = req.params as { id: string };
          const row = await db
            .selectFrom('review_items')
            .select(['id', 'device_id', 'item'])
            .where('id', '=', id)
            .executeTakeFirst();
          if (!row) throw new EdgeguardError('EG_NOT_FOUND', `no review item ${id}.`);
          return { id: row.id, deviceId: row.device_id, item: row.item };
        },
      );
    },
  };
}
