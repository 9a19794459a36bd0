/** Device and admin endpoints (client certificate required; see auth.ts). */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { protocol } from '../../attest/index.ts';
import { EdgeguardError } from '../../errors/index.ts';
import { DEVICE_ID_RE, normalizeSerial, verifyCsr, x509 } from '../../pki/index.ts';
import type { ControlPlaneContext } from '../context.ts';
import type { EnrollmentService } from '../enrollment.ts';
import { ERROR_SCHEMA } from '../errors.ts';
import { outcomeOf } from '../events.ts';
import { DEVICE_STATUSES, DEVICE_VIEW_SCHEMA, deviceView } from '../../fleet/index.ts';
import type { DeviceStatus } from '../../store/index.ts';

/** An optional RFC 5280 revocation reason (the CRL entry's reasonCode). */
const REVOCATION_BODY = {
  type: ['object', 'null'],
  properties: {
    reason: {
      type: 'string',
      enum: ['unspecified', 'keyCompromise', 'affiliationChanged', 'superseded', 'cessationOfOperation'],
    },
  },
  additionalProperties: false,
} as const;

const idParams = {
  type: 'object',
  properties: { id: { type: 'string', pattern: DEVICE_ID_RE.source } },
  required: ['id'],
  additionalProperties: false,
} as const;
const errors = { 400: ERROR_SCHEMA, 401: ERROR_SCHEMA, 403: ERROR_SCHEMA, 404: ERROR_SCHEMA, 409: ERROR_SCHEMA };
const deviceSecurity = [{ deviceCertificate: [] }];
const adminSecurity = [{ adminCertificate: [] }];

/** An admin's refused or failed action on device `id`, for the audit log. */
function adminRefusal(req: FastifyRequest, action: string, status: number) {
  const params = req.params as { id?: string; serial?: string } | undefined;
  const id = params?.id ?? params?.serial;
  // Without a verified fleet certificate anyone can cause a refusal: those are a metric
  // (edgeguard_auth_refusals_total), never a permanent entry each.
  const who = req.identity ?? req.presented;
  if (!id || who === undefined) return undefined;
  const actor =
    who.role === 'device' && who.deviceId !== undefined
      ? { kind: 'device' as const, id: who.deviceId }
      : { kind: 'admin' as const, id: who.name };
  return { actor, subject: id, outcome: outcomeOf(status), details: { action, target: id, detail: `HTTP ${status}` } };
}

/** last_seen_at is written at most once a minute per device: no disk write (fsync) on the hot path. */
const LAST_SEEN_RESOLUTION_MS = 60_000;

/** A device renews at two thirds of its lifetime; a loop of renewals is a fault or an attack on the CA. */
async function refuseRenewalBeyondLimit(ctx: ControlPlaneContext, deviceId: string): Promise<void> {
  const { maxPerWindow, windowMs } = ctx.policy.renewal;
  const since = new Date(Date.now() - windowMs).toISOString();
  if ((await ctx.store.certificatesIssuedSince(deviceId, since)) < maxPerWindow) return;
  throw new EdgeguardError(
    'EG_RATE_LIMITED',
    `device ${deviceId} was issued ${maxPerWindow} certificates in the last ${Math.round(windowMs / 3600_000)} h; renew again later (the current certificate stays valid).`,
  );
}

export async function deviceRoutes(
  app: FastifyInstance,
  ctx: ControlPlaneContext,
  service: EnrollmentService,
): Promise<void> {
  const lastSeenWritten = new Map<string, number>();
  const touch = async (id: string) => {
    const now = Date.now();
    if (now - (lastSeenWritten.get(id) ?? 0) < LAST_SEEN_RESOLUTION_MS) return;
    lastSeenWritten.set(id, now);
    await ctx.store.touchDevice(id);
  };
  // ---- device-only ----
  app.get(
    '/v1/device/self',
    {
      onRequest: ctx.requireDevice,
      schema: {
        tags: ['device'],
        summary: "The calling device's own record",
        security: deviceSecurity,
        response: { 200: DEVICE_VIEW_SCHEMA, ...errors },
      },
    },
    async (req) => {
      const device = req.device!;
      await touch(device.id);
      return deviceView(device);
    },
  );

  app.post(
    '/v1/device/renew',
    {
      onRequest: ctx.requireDevice,
      onError: ctx.events.onRefusal((req, status) => {
        const deviceId = req.identity?.deviceId;
        if (!deviceId) return undefined;
        const details = { action: 'renew device certificate', detail: `HTTP ${status}` };
        return { actor: { kind: 'device', id: deviceId }, subject: deviceId, outcome: outcomeOf(status), details };
      }),
      schema: {
        tags: ['device'],
        summary: 'Renew the device certificate (same key: the CSR must be for the key of the certificate in use)',
        security: deviceSecurity,
        body: protocol.jsonSchemaOf(protocol.RenewRequest),
        response: { 200: protocol.jsonSchemaOf(protocol.CertificateResponse), ...errors },
      },
    },
    async (req) => {
      const body = protocol.RenewRequest.parse(req.body);
      const device = (await ctx.store.getDevice(req.identity!.deviceId!))!;
      await refuseRenewalBeyondLimit(ctx, device.id);
      const current = await ctx.store.getCertificate(req.identity!.serial);
      const { spki } = await verifyCsr(body.csr);
      const currentSpki = Buffer.from(
        new x509.X509Certificate(current!.pem.split(/(?<=-----END CERTIFICATE-----)/)[0]!).publicKey.rawData,
      );
      if (!spki.equals(currentSpki)) {
        throw new EdgeguardError(
          'EG_FORBIDDEN',
          'a renewal must keep the enrolled key; the CSR is for another key. Re-enroll to change keys.',
        );
      }
      const issued = await service.issueFor(device, body.csr);
      return {
        deviceId: device.id,
        certificateChain: issued.chainPem,
        fleetCa: ctx.ca.rootPem,
        notAfter: issued.notAfter.toISOString(),
      };
    },
  );

  // ---- device (its own record only) or admin ----
  app.get(
    '/v1/devices/:id',
    {
      onRequest: ctx.requireDeviceOrAdmin,
      schema: {
        tags: ['devices'],
        summary: 'One device record (a device may read only its own)',
        security: [...deviceSecurity, ...adminSecurity],
        params: idParams,
        response: { 200: DEVICE_VIEW_SCHEMA, ...errors },
      },
    },
    async (req) => {
      const { id } = req.params as { id: string };
      const who = req.identity!;
      if (who.role === 'device' && who.deviceId !== id) {
        throw new EdgeguardError('EG_FORBIDDEN', 'a device may read only its own record.', {
          details: { reason: 'other_device' },
        });
      }
      const device = await ctx.store.getDevice(id);
      if (!device) throw new EdgeguardError('EG_NOT_FOUND', `no device ${id}.`);
      return deviceView(device);
    },
  );

  // ---- admin ----
  app.get(
    '/v1/devices',
    {
      onRequest: ctx.requireAdmin,
      schema: {
        tags: ['devices'],
        summary: 'List devices',
        security: adminSecurity,
        querystring: {
          type: 'object',
          properties: { status: { type: 'string', enum: [...DEVICE_STATUSES] } },
          additionalProperties: false,
        },
        response: {
          200: { type: 'object', properties: { devices: { type: 'array', items: DEVICE_VIEW_SCHEMA } } },
          ...errors,
        },
      },
    },
    async (req) => {
      const { status } = req.query as { status?: DeviceStatus };
      return { devices: (await ctx.store.listDevices({ status })).map(deviceView) };
    },
  );

  app.post(
    '/v1/devices/:id/approve',
    {
      onRequest: ctx.requireAdmin,
      onError: ctx.events.onRefusal((req, status) => adminRefusal(req, 'approve device', status)),
      schema: {
        tags: ['devices'],
        summary: 'Approve a pending device; its certificate is issued',
        security: adminSecurity,
        params: idParams,
        response: { 200: DEVICE_VIEW_SCHEMA, ...errors },
      },
    },
    async (req) => {
      const { id } = req.params as { id: string };
      const by = req.identity!.name;
      const device = await service.approve(id, by);
      req.log.info({ deviceId: id, by }, 'device approved');
      await ctx.events.emit('device.approved', {
        actor: { kind: 'admin', id: by },
        subject: id,
        outcome: 'success',
        details: { deviceId: id, approvedBy: by },
      });
      return deviceView(device);
    },
  );

  app.post(
    '/v1/devices/:id/revoke',
    {
      onRequest: ctx.requireAdmin,
      onError: ctx.events.onRefusal((req, status) => adminRefusal(req, 'revoke device', status)),
      schema: {
        tags: ['devices'],
        summary: 'Revoke a device and all its certificates (effective on its next request)',
        security: adminSecurity,
        params: idParams,
        body: REVOCATION_BODY,
        response: {
          200: {
            type: 'object',
            properties: { device: DEVICE_VIEW_SCHEMA, revokedSerials: { type: 'array', items: { type: 'string' } } },
          },
          ...errors,
        },
      },
    },
    async (req) => {
      const { id } = req.params as { id: string };
      const reason = (req.body as { reason?: string } | null | undefined)?.reason ?? 'cessationOfOperation';
      const r = await ctx.store.revokeDevice(id, reason);
      if (!r) {
        const existing = await ctx.store.getDevice(id);
        if (!existing) throw new EdgeguardError('EG_NOT_FOUND', `no device ${id}.`);
        throw new EdgeguardError('EG_EXISTS', `device ${id} is already revoked.`);
      }
      ctx.crlChanged();
      req.log.warn({ deviceId: id, by: req.identity!.name, serials: r.revokedSerials }, 'device revoked');
      await ctx.events.emit('device.revoked', {
        actor: { kind: 'admin', id: req.identity!.name },
        subject: id,
        outcome: 'success',
        details: { deviceId: id, reason, revokedSerials: r.revokedSerials.slice(0, 1000) },
      });
      return { device: deviceView(r.device), revokedSerials: r.revokedSerials };
    },
  );

  app.delete(
    '/v1/devices/:id',
    {
      onRequest: ctx.requireAdmin,
      onError: ctx.events.onRefusal((req, status) => adminRefusal(req, 'remove device', status)),
      schema: {
        tags: ['devices'],
        summary: 'Remove a revoked device so that its TPM can enroll again (its certificates stay revoked)',
        security: adminSecurity,
        params: idParams,
        response: { 200: { type: 'object', properties: { removed: { type: 'string' } } }, ...errors },
      },
    },
    async (req) => {
      const { id } = req.params as { id: string };
      if (!(await ctx.store.deleteRevokedDevice(id))) {
        const existing = await ctx.store.getDevice(id);
        if (!existing) throw new EdgeguardError('EG_NOT_FOUND', `no device ${id}.`);
        throw new EdgeguardError('EG_EXISTS', `device ${id} is ${existing.status}; revoke it before removing it.`);
      }
      req.log.warn({ deviceId: id, by: req.identity!.name }, 'device removed');
      await ctx.events.emit('admin.action', {
        actor: { kind: 'admin', id: req.identity!.name },
        subject: id,
        outcome: 'success',
        details: { action: 'remove device', target: id },
      });
      return { removed: id };
    },
  );

  app.post(
    '/v1/certificates/:serial/revoke',
    {
      onRequest: ctx.requireAdmin,
      onError: ctx.events.onRefusal((req, status) => adminRefusal(req, 'revoke certificate', status)),
      schema: {
        tags: ['pki'],
        summary: 'Revoke one certificate by serial (e.g. a lost admin certificate); effective on its next request',
        security: adminSecurity,
        params: {
          type: 'object',
          properties: { serial: { type: 'string', pattern: '^[0-9a-fA-F]{1,64}$' } },
          required: ['serial'],
          additionalProperties: false,
        },
        body: REVOCATION_BODY,
        response: {
          200: {
            type: 'object',
            properties: { serial: { type: 'string' }, role: { type: 'string' }, revokedAt: { type: 'string' } },
          },
          ...errors,
        },
      },
    },
    async (req) => {
      const serial = normalizeSerial((req.params as { serial: string }).serial);
      const reason = (req.body as { reason?: string } | null | undefined)?.reason ?? 'unspecified';
      if (serial === req.identity!.serial)
        throw new EdgeguardError(
          'EG_FORBIDDEN',
          'an admin cannot revoke the certificate it is using; use another admin certificate.',
        );
      const cert = await ctx.store.getCertificate(serial);
      if (!cert) throw new EdgeguardError('EG_NOT_FOUND', `no certificate with serial ${serial}.`);
      if (!(await ctx.store.revokeCertificate(serial, reason)))
        throw new EdgeguardError('EG_EXISTS', `certificate ${serial} is already revoked.`);
      ctx.crlChanged();
      req.log.warn({ serial, role: cert.role, by: req.identity!.name }, 'certificate revoked');
      await ctx.events.emit('admin.action', {
        actor: { kind: 'admin', id: req.identity!.name },
        subject: serial,
        outcome: 'success',
        details: { action: 'revoke certificate', target: serial, detail: `${cert.role} certificate, ${reason}` },
      });
      const after = await ctx.store.getCertificate(serial);
      return { serial, role: cert.role, revokedAt: after!.revoked_at! };
    },
  );

  app.get(
    '/metrics',
    {
      onRequest: ctx.requireAdmin,
      schema: { tags: ['operations'], summary: 'Prometheus metrics (admin certificate)', security: adminSecurity },
    },
    async (_req, reply) => {
      return reply.type(ctx.registry.contentType).send(await ctx.registry.metrics());
    },
  );
}
