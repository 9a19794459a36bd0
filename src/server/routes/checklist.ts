/**
 * Device checklist reports on the control plane (a server plugin, see ../README-extending.md; the
 * wire format is src/fleet/checklist.ts, the report's own src/checklist):
 *
 *   POST /v1/checklist/reports       device  DSSE envelope            -> { deviceId, envelopeSha256, score, failing, receivedAt }
 *   GET  /v1/checklist/reports       admin   -> { devices: [{ deviceId, label, status, report? }] }
 *   GET  /v1/devices/:id/checklist   admin   -> { deviceId, envelopeSha256, receivedAt, envelope, report }
 *
 * An upload is kept only when its envelope verifies under the key of the certificate it came in
 * with and its report is well formed (score and totals the items earn); the digest of the stored
 * envelope, the score and the failing items go into the audit log before the upload is answered.
 */
import { createHash, X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { protocol } from '../../attest/index.ts';
import { failingItems, MAX_REPORT_BYTES, parseChecklistReport, verifySignedReport } from '../../checklist/index.ts';
import { EdgeguardError } from '../../errors/index.ts';
import { ChecklistUploadResponse, DeviceChecklist, FleetChecklist } from '../../fleet/index.ts';
import { DEVICE_ID_RE } from '../../pki/index.ts';
import { ChecklistRecords } from '../checklist/records.ts';
import type { ControlPlaneContext } from '../context.ts';
import { ERROR_SCHEMA } from '../errors.ts';
import type { ServerPlugin } from '../plugins.ts';
import type { ChecklistReportSource } from '../ui/data.ts';

const errors = { 400: ERROR_SCHEMA, 401: ERROR_SCHEMA, 403: ERROR_SCHEMA, 404: ERROR_SCHEMA, 413: ERROR_SCHEMA };

const ENVELOPE_BODY = {
  type: 'object',
  additionalProperties: false,
  required: ['payloadType', 'payload', 'signatures'],
  properties: {
    payloadType: { type: 'string', minLength: 1, maxLength: 256 },
    payload: { type: 'string', maxLength: Math.ceil(MAX_REPORT_BYTES / 3) * 4 },
    signatures: {
      type: 'array',
      minItems: 1,
      maxItems: 4,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['sig'],
        properties: { keyid: { type: 'string', maxLength: 256 }, sig: { type: 'string', maxLength: 2048 } },
      },
    },
  },
} as const;

export interface ChecklistServerPlugin extends ServerPlugin {
  /** The stored reports, once the plugin is registered (the dashboard reads them). */
  readonly records: ChecklistRecords | undefined;
}

export function checklistServerPlugin(): ChecklistServerPlugin {
  let records: ChecklistRecords | undefined;
  return {
    name: 'checklist',
    get records() {
      return records;
    },
    async register(app, ctx) {
      const r = new ChecklistRecords(ctx.store.db);
      records = r;
      uploadRoute(app, ctx, r);
      adminRoutes(app, ctx, r);
    },
  };
}

/** The stored reports as the dashboard reads them (the payload parsed again, strictly). */
export function checklistReportSource(plugin: ChecklistServerPlugin): ChecklistReportSource {
  return {
    async latest(deviceId) {
      const r = await plugin.records?.latest(deviceId);
      if (!r) return undefined;
      const envelope = JSON.parse(r.envelope) as { payload: string };
      const report = parseChecklistReport(JSON.parse(Buffer.from(envelope.payload, 'base64').toString('utf8')));
      return { report, receivedAt: r.receivedAt, sha256: r.envelopeSha256 };
    },
  };
}

function peerPublicKey(req: FastifyRequest) {
  const peer = (req.raw.socket as TLSSocket).getPeerCertificate?.(false);
  if (!peer?.raw) throw new EdgeguardError('EG_UNAUTHORIZED', 'this endpoint needs the device certificate.');
  return new X509Certificate(peer.raw).publicKey;
}

function uploadRoute(app: FastifyInstance, ctx: ControlPlaneContext, records: ChecklistRecords): void {
  app.post(
    '/v1/checklist/reports',
    {
      onRequest: ctx.requireDevice,
      bodyLimit: Math.ceil(MAX_REPORT_BYTES / 3) * 4 + 8 * 1024,
      schema: {
        tags: ['checklist'],
        summary: "store the device's checklist report, signed by its certificate key (a DSSE envelope)",
        body: ENVELOPE_BODY,
        response: { 200: protocol.jsonSchemaOf(ChecklistUploadResponse), ...errors },
      },
    },
    async (req) => {
      const deviceId = req.identity!.deviceId!;
      const envelope = JSON.stringify(req.body);
      let report;
      try {
        report = verifySignedReport(envelope, peerPublicKey(req));
      } catch (e) {
        const code = (e as EdgeguardError).code;
        if (code === 'EG_FORMAT' || code === 'EG_SIGNATURE_INVALID')
          throw new EdgeguardError(
            'EG_BAD_REQUEST',
            `the checklist report was not stored: ${(e as Error).message} Sign it with this device's certificate key (edgeguard checklist --upload).`,
            { cause: e },
          );
        throw e;
      }
      const stored = {
        deviceId,
        envelope,
        envelopeSha256: createHash('sha256').update(envelope).digest('hex'),
        score: report.score,
        failing: failingItems(report),
        totals: report.totals,
        generatedAt: report.generatedAt,
        receivedAt: new Date().toISOString(),
      };
      await records.put(stored);
      await ctx.events.emit('checklist.reported', {
        actor: { kind: 'device', id: deviceId },
        subject: deviceId,
        outcome: stored.failing.length === 0 ? 'success' : 'failure',
        details: { deviceId, envelopeSha256: stored.envelopeSha256, score: stored.score, failing: stored.failing },
      });
      const { envelope: _, totals: __, generatedAt: ___, ...answer } = stored;
      return answer;
    },
  );
}

function adminRoutes(app: FastifyInstance, ctx: ControlPlaneContext, records: ChecklistRecords): void {
  app.get(
    '/v1/checklist/reports',
    {
      onRequest: ctx.requireAdmin,
      schema: {
        tags: ['checklist'],
        summary: 'every device with its latest checklist score and failing items (admin certificate)',
        response: { 200: protocol.jsonSchemaOf(FleetChecklist), ...errors },
      },
    },
    async () => {
      const byDevice = new Map((await records.summaries()).map((s) => [s.deviceId, s]));
      const devices = (await ctx.store.listDevices()).map((d) => {
        const s = byDevice.get(d.id);
        return {
          deviceId: d.id,
          ...(d.label ? { label: d.label } : {}),
          status: d.status,
          ...(s
            ? {
                report: {
                  score: s.score,
                  failing: s.failing,
                  generatedAt: s.generatedAt,
                  receivedAt: s.receivedAt,
                  envelopeSha256: s.envelopeSha256,
                },
              }
            : {}),
        };
      });
      return { devices };
    },
  );

  app.get(
    '/v1/devices/:id/checklist',
    {
      onRequest: ctx.requireAdmin,
      schema: {
        tags: ['checklist'],
        summary: "the device's latest checklist report: the signed envelope and its report (admin certificate)",
        params: {
          type: 'object',
          properties: { id: { type: 'string', pattern: DEVICE_ID_RE.source } },
          required: ['id'],
          additionalProperties: false,
        },
        response: { 200: protocol.jsonSchemaOf(DeviceChecklist), ...errors },
      },
    },
    async (req) => {
      const { id } = req.params as { id: string };
      const r = await records.latest(id);
      if (!r) throw new EdgeguardError('EG_NOT_FOUND', `device ${id} has not uploaded a checklist report.`);
      const envelope = JSON.parse(r.envelope) as { payload: string };
      return {
        deviceId: id,
        envelopeSha256: r.envelopeSha256,
        receivedAt: r.receivedAt,
        envelope,
        report: JSON.parse(Buffer.from(envelope.payload, 'base64').toString('utf8')) as Record<string, unknown>,
      };
    },
  );
}
