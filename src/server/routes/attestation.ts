/**
 * Remote attestation on the control plane (a server plugin, see ../README-extending.md; the
 * verifier itself is ../attestation/verifier.ts, the wire format src/fleet/attestation.ts):
 *
 *   POST /v1/attestation/nonce                        device  {}                 -> { nonce, expiresAt, pcrs }
 *   POST /v1/attestation/evidence                     device  evidence           -> verdict
 *   GET  /v1/devices/:id/attestation                  admin   -> the gate's answer for the device
 *   POST /v1/attestation/policies                     admin   { policy, label, device | group } -> { sha256 }
 *   PUT  /v1/attestation/groups/:group/devices/:id    admin   -> the device joins the group
 *
 * A body that breaks the schema is 400 EG_BAD_REQUEST; evidence that parses but does not hold is
 * a recorded failed verdict (200 with its reasons), since that is what the device is told to fix.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { protocol } from '../../attest/index.ts';
import { EdgeguardError, isEdgeguardError } from '../../errors/index.ts';
import {
  AttestationStatus,
  decodeEvidence,
  EVIDENCE_MEDIA_TYPE,
  evidenceFromJson,
  EvidenceRequest,
  MAX_EVIDENCE_BODY_BYTES,
  MAX_EVIDENCE_LOG_BYTES,
  NonceResponse,
  VerdictResponse,
  type DecodedEvidence,
} from '../../fleet/index.ts';
import { DEVICE_ID_RE } from '../../pki/index.ts';
import type { ControlPlaneContext } from '../context.ts';
import { ERROR_SCHEMA } from '../errors.ts';
import type { ServerPlugin } from '../plugins.ts';
import { AttestationVerifier, type AttestationOptions } from '../attestation/verifier.ts';

export interface AttestationServerPlugin extends ServerPlugin {
  /** The gate the release work calls: `trusted` only with a fresh passing verdict. Throws before registration. */
  attestationGate(deviceId: string): Promise<AttestationStatus>;
  /** The verifier, once the plugin is registered. */
  readonly verifier: AttestationVerifier | undefined;
}

const errors = { 400: ERROR_SCHEMA, 401: ERROR_SCHEMA, 403: ERROR_SCHEMA, 404: ERROR_SCHEMA, 413: ERROR_SCHEMA };
const deviceId = { type: 'string', pattern: DEVICE_ID_RE.source } as const;
const groupName = { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$' } as const;
const MAX_POLICY_BYTES = 1024 * 1024;
/** The timer that records silent devices runs this often, at most. */
const MAX_SWEEP_INTERVAL_MS = 30_000;

export function attestationServerPlugin(options: AttestationOptions = {}): AttestationServerPlugin {
  let verifier: AttestationVerifier | undefined;
  return {
    name: 'attestation',
    get verifier() {
      return verifier;
    },
    async attestationGate(id) {
      if (!verifier) throw new EdgeguardError('EG_SERVER', 'the attestation plugin is not registered yet.');
      return verifier.status(id);
    },
    async register(app, ctx) {
      const v = new AttestationVerifier(ctx, ctx.log, options);
      verifier = v;
      startSilenceTimer(app, v, ((options.freshnessSeconds ?? 300) * 1000) / 5);
      await deviceRoutes(app, ctx, v);
      adminRoutes(app, ctx, v);
    },
  };
}

function startSilenceTimer(app: FastifyInstance, v: AttestationVerifier, everyMs: number): void {
  const timer = setInterval(
    () => {
      v.recordSilentDevices().catch((err) => app.log.error({ err }, 'recording silent devices failed'));
    },
    Math.min(Math.max(everyMs, 1000), MAX_SWEEP_INTERVAL_MS),
  );
  timer.unref();
  app.addHook('onClose', async () => clearInterval(timer));
}

/**
 * Every device calls these on a schedule (two requests per appraisal): their request lines are
 * logged at warn, not info (about 0.5 ms of server CPU per appraisal in bench/attest). Each verdict
 * is still an info line and an audit event, and a refused request is still logged, below.
 */
const QUIET = {
  logLevel: 'warn',
  onError: async (req: FastifyRequest, reply: FastifyReply, err: Error) => {
    req.log.warn({ err, statusCode: reply.statusCode, url: req.url }, 'attestation request refused');
  },
} as const;

async function deviceRoutes(app: FastifyInstance, ctx: ControlPlaneContext, v: AttestationVerifier): Promise<void> {
  app.post(
    '/v1/attestation/nonce',
    {
      ...QUIET,
      onRequest: ctx.requireDevice,
      schema: {
        tags: ['attestation'],
        summary: 'a single-use nonce for the calling device, and the PCRs its policy needs quoted',
        body: { type: ['object', 'null'], additionalProperties: false, properties: {} },
        response: { 200: protocol.jsonSchemaOf(NonceResponse), ...errors },
      },
    },
    async (req) => v.issueNonce(req.identity!.deviceId!),
  );

  // Its own scope: the binary evidence parser applies to this route only.
  await app.register(async (scope) => {
    scope.addContentTypeParser(
      EVIDENCE_MEDIA_TYPE,
      { parseAs: 'buffer', bodyLimit: MAX_EVIDENCE_BODY_BYTES },
      (_req, body, done) => done(null, body),
    );
    scope.post(
      '/v1/attestation/evidence',
      {
        ...QUIET,
        onRequest: ctx.requireDevice,
        bodyLimit: Math.max(Math.ceil((MAX_EVIDENCE_LOG_BYTES * 4) / 3) + 64 * 1024, MAX_EVIDENCE_BODY_BYTES),
        schema: {
          tags: ['attestation'],
          summary:
            'appraise a quote and its measured-boot event log against the device policy; the verdict is recorded',
          description: `The evidence as JSON (base64 members) or, with Content-Type ${EVIDENCE_MEDIA_TYPE}, in the binary form of docs/formats.md ("Binary evidence body"): the same members without base64.`,
          body: {
            content: {
              'application/json': { schema: protocol.jsonSchemaOf(EvidenceRequest) },
              // The bytes are checked by decodeEvidence (magic, version, flags, every length).
              [EVIDENCE_MEDIA_TYPE]: {
                schema: {
                  description:
                    '"EGEV", version 1, flags (bit 0: nextNonce), nonce (32 bytes), u16 length + quote, u16 length + signature, u32 length + event log; big-endian',
                  contentMediaType: EVIDENCE_MEDIA_TYPE,
                },
              },
            },
          },
          response: { 200: protocol.jsonSchemaOf(VerdictResponse), ...errors },
        },
      },
      async (req) => v.appraise(req.device!, evidenceOf(req.body)),
    );
  });
}

/**
 * The evidence from either form. JSON: the JSON Schema has checked the shape, types and lengths;
 * zod checks the base64 alphabet (once: a pattern in the schema would scan the ~50 KB log a second
 * time). Binary: decodeEvidence checks every length; there is no alphabet to check.
 */
function evidenceOf(raw: unknown): DecodedEvidence {
  if (Buffer.isBuffer(raw)) return decodeEvidence(raw);
  const body = EvidenceRequest.safeParse(raw);
  if (!body.success) {
    const issue = body.error.issues[0];
    throw new EdgeguardError('EG_BAD_REQUEST', `the evidence is invalid: ${issue?.path.join('.')}: ${issue?.message}.`);
  }
  return evidenceFromJson(body.data);
}

function adminRoutes(app: FastifyInstance, ctx: ControlPlaneContext, v: AttestationVerifier): void {
  app.get(
    '/v1/devices/:id/attestation',
    {
      onRequest: ctx.requireAdmin,
      schema: {
        tags: ['attestation'],
        summary: 'the gate: trusted only with a passing verdict inside its freshness window',
        params: { type: 'object', properties: { id: deviceId }, required: ['id'], additionalProperties: false },
        response: { 200: protocol.jsonSchemaOf(AttestationStatus), ...errors },
      },
    },
    async (req) => {
      const { id } = req.params as { id: string };
      if (!(await ctx.store.getDevice(id))) throw new EdgeguardError('EG_NOT_FOUND', `no device ${id}.`);
      return v.status(id);
    },
  );

  app.post(
    '/v1/attestation/policies',
    {
      onRequest: ctx.requireAdmin,
      bodyLimit: MAX_POLICY_BYTES + 4096,
      schema: {
        tags: ['attestation'],
        summary: 'store a boot policy (YAML) and assign it to a device or a group',
        body: {
          type: 'object',
          required: ['policy', 'label'],
          additionalProperties: false,
          properties: {
            policy: { type: 'string', maxLength: MAX_POLICY_BYTES },
            label: { type: 'string', minLength: 1, maxLength: 200 },
            device: deviceId,
            group: groupName,
          },
          oneOf: [{ required: ['device'] }, { required: ['group'] }],
        },
        response: { 200: { type: 'object', properties: { sha256: { type: 'string' } } }, ...errors },
      },
    },
    async (req) => {
      const body = req.body as { policy: string; label: string; device?: string; group?: string };
      if (body.device !== undefined && !(await ctx.store.getDevice(body.device)))
        throw new EdgeguardError('EG_NOT_FOUND', `no device ${body.device}.`);
      const target = body.device !== undefined ? { device: body.device } : { group: body.group ?? '' };
      let assigned;
      try {
        assigned = await v.assignPolicy(target, body.policy, body.label, req.identity!.name ?? 'admin');
      } catch (e) {
        if (isEdgeguardError(e, 'EG_ATTEST_POLICY'))
          throw new EdgeguardError('EG_BAD_REQUEST', e.message, { cause: e });
        throw e;
      }
      await ctx.events.emit('policy.changed', {
        actor: { kind: 'admin', id: req.identity!.name },
        subject: body.device ?? `group:${body.group}`,
        outcome: 'success',
        details: { policy: `boot:${body.device ?? `group:${body.group}`}`, newSha256: assigned.sha256 },
      });
      return assigned;
    },
  );

  app.put(
    '/v1/attestation/groups/:group/devices/:id',
    {
      onRequest: ctx.requireAdmin,
      schema: {
        tags: ['attestation'],
        summary: "put a device in a group (the group's boot policy applies unless the device has its own)",
        params: {
          type: 'object',
          properties: { group: groupName, id: deviceId },
          required: ['group', 'id'],
          additionalProperties: false,
        },
        response: {
          200: { type: 'object', properties: { device: { type: 'string' }, group: { type: 'string' } } },
          ...errors,
        },
      },
    },
    async (req) => {
      const { group, id } = req.params as { group: string; id: string };
      if (!(await ctx.store.getDevice(id))) throw new EdgeguardError('EG_NOT_FOUND', `no device ${id}.`);
      await v.records.setGroup(id, group);
      return { device: id, group };
    },
  );
}
