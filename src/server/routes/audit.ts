/**
 * The audit log's HTTP API (a server plugin, see ../README-extending.md):
 *
 *   GET  /v1/audit/checkpoint               public   latest signed checkpoint (C2SP signed note, text/plain)
 *   GET  /v1/audit/proof/consistency        public   ?from=M&to=N -> { proof: [base64] }
 *   GET  /v1/audit/tile/L/N[.p/W]           public   C2SP tlog-tiles hash tile (binary)
 *   GET  /v1/audit/tile/entries/N[.p/W]     admin    tlog-tiles entry bundle (binary)
 *   GET  /v1/audit/entries/:index/proof     device/admin  ?size=N -> leaf + inclusion proof
 *   POST /v1/audit/events                   admin    append a server-side event (actor = the admin)
 *   POST /v1/audit/journal                  device   forward signed journal records (chain-checked)
 *   GET  /v1/audit/journal/head             device   the device's last logged journal entry
 *
 * Checkpoints and consistency proofs reveal only hashes, so witnesses outside the fleet can follow
 * the log without a certificate; entry contents need a fleet certificate, and a device sees only
 * its own entries. The control plane's own security events (approvals, revocations, certificates
 * issued, enrollments) are appended by the routes that cause them, through ctx.events.
 */
import { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Kysely } from 'kysely';
import { Gauge } from 'prom-client';
import { EdgeguardError, isEdgeguardError } from '../../errors/index.ts';
import {
  AuditLog,
  decodeJournalRecord,
  DEFAULT_LOG_ORIGIN,
  loadOrCreateLogSigner,
  parseAuditEvent,
  decodeLogLeaf,
  type NoteSigner,
} from '../../audit/index.ts';
import type { ControlPlaneContext } from '../context.ts';
import { ERROR_SCHEMA } from '../errors.ts';
import type { ServerPlugin } from '../plugins.ts';
import { applyTamperReport } from '../tamper-report.ts';
import { refuseOutsideAdminAuthority, registerAuditListRoute } from './audit-list.ts';

export { DEFAULT_LOG_ORIGIN } from '../../audit/index.ts';

export interface AuditPluginOptions {
  /** The checkpoint signing key; else loaded (or created) in dataDir. */
  signer?: NoteSigner;
  dataDir?: string;
  /** Log name and checkpoint origin; every replica of one fleet must use the same (and the same key). */
  origin?: string;
  /** The origin of a new log when none is configured (an existing log keeps the one it signed with). */
  defaultOrigin?: string;
  checkpointIntervalMs?: number;
}

export interface AuditServerPlugin extends ServerPlugin {
  /** The log, once the plugin is registered. */
  readonly log: AuditLog | undefined;
}

const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64');
const errors = { 400: ERROR_SCHEMA, 401: ERROR_SCHEMA, 403: ERROR_SCHEMA, 404: ERROR_SCHEMA, 500: ERROR_SCHEMA };
const hashList = { type: 'array', items: { type: 'string' }, maxItems: 128 } as const;
const MAX_RECORDS = 1000;

/** C2SP tlog-tiles: a tile index is N in 3-digit groups, all but the last prefixed with "x" (x001/x234/067). */
export function tileIndexPath(index: number, partialWidth?: number): string {
  const groups: string[] = [];
  let n = index;
  do {
    groups.unshift(String(n % 1000).padStart(3, '0'));
    n = Math.floor(n / 1000);
  } while (n > 0);
  const path = groups.map((g, i) => (i < groups.length - 1 ? `x${g}` : g)).join('/');
  return partialWidth === undefined ? path : `${path}.p/${partialWidth}`;
}

/** The index and width of a tile path; only the canonical spelling is one (so every tile has one URL to cache). */
export function parseTileIndex(path: string): { index: number; width: number } {
  const bad = () => new EdgeguardError('EG_NOT_FOUND', `"${path}" is not a tile path (e.g. 000, x001/234, 005.p/17).`);
  const m = /^((?:x\d{3}\/)*)(\d{3})(?:\.p\/(\d{1,3}))?$/.exec(path);
  if (!m) throw bad();
  const index = Number((m[1] ?? '').replace(/x|\//g, '') + (m[2] ?? ''));
  const width = m[3] === undefined ? 256 : Number(m[3]);
  // A partial tile has 1..255 hashes; 256 is the full tile, spelled without ".p/".
  if (!Number.isSafeInteger(index) || width < 1 || (m[3] !== undefined && width > 255)) throw bad();
  if (tileIndexPath(index, m[3] === undefined ? undefined : width) !== path) throw bad();
  return { index, width };
}

/** A tile level: decimal, no leading zero. Level 8 would start at tree level 64: above the top of any log. */
function parseTileLevel(level: string): number {
  if (!/^[0-7]$/.test(level))
    throw new EdgeguardError('EG_NOT_FOUND', `tile level "${level}" does not exist in this log.`);
  return Number(level);
}

/** Full tiles never change (C2SP tlog-tiles: cache them); partial ones grow into full ones. */
const cacheControlOf = (width: number) => (width === 256 ? 'public, max-age=31536000, immutable' : 'no-cache');

function peerPublicKey(req: FastifyRequest) {
  const peer = (req.raw.socket as TLSSocket).getPeerCertificate?.(false);
  if (!peer?.raw) throw new EdgeguardError('EG_UNAUTHORIZED', 'this endpoint needs the device certificate.');
  return new X509Certificate(peer.raw).publicKey;
}

function nonNegative(value: unknown, name: string): number {
  const n = typeof value === 'string' && /^(0|[1-9][0-9]{0,15})$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n)) throw new EdgeguardError('EG_USAGE', `${name} must be a non-negative integer.`);
  return n;
}

/** A store behind its latest signed checkpoint refuses appends (EG_AUDIT_BEHIND): say so in /healthz and a gauge. */
function watchStoreBehindCheckpoint(log: AuditLog, ctx: ControlPlaneContext): void {
  const problem = async () => {
    const behind = await log.storeBehindCheckpoint();
    return behind === undefined
      ? undefined
      : `audit store holds ${behind.stored} entries, a checkpoint was signed at ${behind.signed}: appends refused`;
  };
  ctx.healthChecks.push(problem);
  new Gauge({
    name: 'edgeguard_audit_store_behind_checkpoint',
    help: '1 while the audit store holds fewer entries than its latest signed checkpoint (appends are refused)',
    registers: [ctx.registry],
    async collect() {
      this.set((await problem()) === undefined ? 0 : 1);
    },
  });
}

/** The origin line of the latest stored checkpoint, if the log has signed one. */
async function signedOrigin(ctx: ControlPlaneContext): Promise<string | undefined> {
  type Tables = { audit_checkpoints: { size: number; note: string } };
  const db = ctx.store.db.withTables<Tables>() as unknown as Kysely<Tables>;
  const row = await db
    .selectFrom('audit_checkpoints')
    .select('note')
    .orderBy('size', 'desc')
    .limit(1)
    .executeTakeFirst();
  return row?.note.split('\n', 1)[0];
}

export function auditServerPlugin(opts: AuditPluginOptions = {}): AuditServerPlugin {
  let log: AuditLog | undefined;
  return {
    name: 'audit',
    get log() {
      return log;
    },
    async register(app: FastifyInstance, ctx: ControlPlaneContext) {
      const origin = opts.origin ?? (await signedOrigin(ctx)) ?? opts.defaultOrigin ?? DEFAULT_LOG_ORIGIN;
      let signer = opts.signer;
      if (signer === undefined) {
        if (opts.dataDir === undefined)
          throw new EdgeguardError(
            'EG_CONFIG',
            'the audit plugin needs the log signing key or the data directory to keep it in.',
          );
        signer = await loadOrCreateLogSigner(opts.dataDir, origin);
      }
      const opened = await AuditLog.open(ctx.store, {
        signer,
        origin,
        ...(opts.checkpointIntervalMs !== undefined ? { checkpointIntervalMs: opts.checkpointIntervalMs } : {}),
        onAlarm: (e) => ctx.log.error({ code: e.code }, `audit log alarm: ${e.message}`),
      });
      log = opened;
      app.addHook('onClose', async () => {
        await opened.close();
      });

      // Routes and services emit their security events through ctx.events (../events.ts) into this log.
      ctx.events.attach(opened);
      watchStoreBehindCheckpoint(opened, ctx);

      app.get(
        '/v1/audit/checkpoint',
        {
          schema: {
            tags: ['audit'],
            summary: 'The latest signed checkpoint (C2SP tlog-checkpoint in a signed note; verify with the log key)',
            response: { 200: { type: 'string' }, ...errors },
          },
        },
        async (_req, reply) => {
          const cp = (await opened.latestCheckpoint()) ?? (await opened.publishCheckpoint());
          return reply.type('text/plain; charset=utf-8').header('cache-control', 'no-cache').send(cp.note);
        },
      );

      app.get(
        '/v1/audit/proof/consistency',
        {
          schema: {
            tags: ['audit'],
            summary: 'RFC 9162 consistency proof between two tree sizes',
            querystring: {
              type: 'object',
              properties: { from: { type: 'string' }, to: { type: 'string' } },
              required: ['from', 'to'],
              additionalProperties: false,
            },
            response: {
              200: {
                type: 'object',
                properties: { from: { type: 'integer' }, to: { type: 'integer' }, proof: hashList },
              },
              ...errors,
            },
          },
        },
        async (req) => {
          const q = req.query as { from: string; to: string };
          const from = nonNegative(q.from, 'from');
          const to = nonNegative(q.to, 'to');
          if (from > to) throw new EdgeguardError('EG_USAGE', 'from must not be larger than to.');
          return { from, to, proof: (await opened.consistencyProof(from, to)).map(b64) };
        },
      );

      app.get(
        '/v1/audit/entries/:index/proof',
        {
          onRequest: ctx.requireDeviceOrAdmin,
          schema: {
            tags: ['audit'],
            summary:
              'An entry (base64 leaf) and its RFC 9162 inclusion proof in the tree of ?size= (default: latest checkpoint); a device may read only its own entries',
            security: [{ deviceCertificate: [] }, { adminCertificate: [] }],
            params: {
              type: 'object',
              properties: { index: { type: 'string', pattern: '^(0|[1-9][0-9]{0,15})$' } },
              required: ['index'],
            },
            querystring: { type: 'object', properties: { size: { type: 'string' } }, additionalProperties: false },
            response: {
              200: {
                type: 'object',
                properties: {
                  index: { type: 'integer' },
                  size: { type: 'integer' },
                  leaf: { type: 'string' },
                  leafHash: { type: 'string' },
                  proof: hashList,
                },
              },
              ...errors,
            },
          },
        },
        async (req) => {
          const index = nonNegative((req.params as { index: string }).index, 'index');
          const sizeText = (req.query as { size?: string }).size;
          const p = await opened.inclusionProof(
            index,
            sizeText === undefined ? undefined : nonNegative(sizeText, 'size'),
          );
          const who = req.identity!;
          if (who.role === 'device') {
            const leaf = decodeLogLeaf(Buffer.from(p.leaf, 'utf8'));
            const own =
              (leaf.origin.kind === 'device' && leaf.origin.device.deviceId === who.deviceId) ||
              leaf.event.subject === who.deviceId;
            if (!own)
              throw new EdgeguardError('EG_FORBIDDEN', 'a device may read only its own audit entries.', {
                details: { reason: 'other_device' },
              });
          }
          return {
            index,
            size: p.size,
            leaf: b64(Buffer.from(p.leaf, 'utf8')),
            leafHash: b64(p.leafHash),
            proof: p.proof.map(b64),
          };
        },
      );

      registerAuditListRoute(app, ctx, opened);

      app.post(
        '/v1/audit/events',
        {
          onRequest: ctx.requireAdmin,
          schema: {
            tags: ['audit'],
            summary:
              "Append an operator event (policy.changed, release.published, attestation.result, admin.action); the actor is the calling admin. Device-origin types come only from device journals and the control plane's own types only from itself: 403.",
            security: [{ adminCertificate: [] }],
            body: { type: 'object' },
            response: { 200: { type: 'object', properties: { index: { type: 'integer' } } }, ...errors },
          },
        },
        async (req) => {
          const raw = req.body as Record<string, unknown>;
          refuseOutsideAdminAuthority(raw.type);
          const event = parseAuditEvent(
            { ...raw, actor: { kind: 'admin', id: req.identity!.name } },
            'the audit event',
          );
          return opened.append(event);
        },
      );

      app.post(
        '/v1/audit/journal',
        {
          onRequest: ctx.requireDevice,
          bodyLimit: 4 * 1024 * 1024,
          schema: {
            tags: ['audit'],
            summary:
              'Forward device journal records (base64, oldest first); chain continuity is checked and gaps are logged with their position',
            security: [{ deviceCertificate: [] }],
            body: {
              type: 'object',
              properties: {
                records: {
                  type: 'array',
                  items: { type: 'string', maxLength: 100_000 },
                  minItems: 1,
                  maxItems: MAX_RECORDS,
                },
              },
              required: ['records'],
              additionalProperties: false,
            },
            response: {
              200: {
                type: 'object',
                properties: {
                  entries: {
                    type: 'array',
                    items: {
                      type: 'object',
                      properties: {
                        seq: { type: 'integer' },
                        index: { type: ['integer', 'null'] },
                        status: { type: 'string' },
                      },
                    },
                  },
                  gaps: {
                    type: 'array',
                    items: {
                      type: 'object',
                      properties: {
                        position: { type: 'integer' },
                        expectedSeq: { type: 'integer' },
                        foundSeq: { type: 'integer' },
                        kind: { type: 'string' },
                        reason: { type: 'string' },
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
          const { records } = req.body as { records: string[] };
          const bytes = records.map((r, i) => {
            if (!/^[A-Za-z0-9+/]*={0,2}$/.test(r)) throw new EdgeguardError('EG_FORMAT', `record ${i} is not base64.`);
            return Buffer.from(r, 'base64');
          });
          try {
            const deviceId = req.identity!.deviceId!;
            const result = await opened.appendDeviceRecords(deviceId, peerPublicKey(req), bytes);
            // Verified and logged above; only now may their content change the device's status.
            const events = bytes.map((b) => decodeJournalRecord(b).event);
            await applyTamperReport(ctx, deviceId, events, req.log);
            return result;
          } catch (e) {
            if (isEdgeguardError(e, 'EG_SIGNATURE_INVALID'))
              throw new EdgeguardError(
                'EG_FORBIDDEN',
                `${e.message} Journal entries must be signed with the key of the device certificate.`,
              );
            throw e;
          }
        },
      );

      app.get(
        '/v1/audit/journal/head',
        {
          onRequest: ctx.requireDevice,
          schema: {
            tags: ['audit'],
            summary: "The calling device's last logged journal entry (seq -1 when none)",
            security: [{ deviceCertificate: [] }],
            response: {
              200: { type: 'object', properties: { seq: { type: 'integer' }, hash: { type: 'string' } } },
              ...errors,
            },
          },
        },
        async (req) => (await opened.deviceHead(req.identity!.deviceId!)) ?? { seq: -1, hash: '00'.repeat(32) },
      );

      app.get(
        '/v1/audit/tile/entries/*',
        {
          onRequest: ctx.requireAdmin,
          schema: {
            tags: ['audit'],
            summary: 'C2SP tlog-tiles entry bundle (each leaf as u16 length || bytes)',
            security: [{ adminCertificate: [] }],
          },
        },
        async (req, reply) => {
          const { index, width } = parseTileIndex((req.params as { '*': string })['*']);
          const bundle = await opened.readEntryBundle(index, width);
          // Entry contents need a certificate: shared caches keep none of them.
          return reply.type('application/octet-stream').header('cache-control', 'private, no-cache').send(bundle);
        },
      );

      app.get(
        '/v1/audit/tile/:level/*',
        {
          schema: {
            tags: ['audit'],
            summary: 'C2SP tlog-tiles hash tile: level L (tree level 8L), index N, optional partial width',
            params: {
              type: 'object',
              properties: { level: { type: 'string', maxLength: 4 }, '*': { type: 'string', maxLength: 64 } },
            },
          },
        },
        async (req, reply) => {
          const p = req.params as { level: string; '*': string };
          const level = parseTileLevel(p.level);
          const { index, width } = parseTileIndex(p['*']);
          const tile = await opened.readTile(level, index, width);
          return reply.type('application/octet-stream').header('cache-control', cacheControlOf(width)).send(tile);
        },
      );
    },
  };
}
