/**
 * The release director's routes (../director/director.ts; wire formats in src/fleet/release.ts):
 *
 *   POST /v1/releases/assignments   admin   assign release@version to a device or group (canary)
 *   GET  /v1/releases/status        admin   assignments, and per device: assigned, installed, failures
 *   GET  /v1/director/keys          device or admin   the director's public signing key(s)
 *   GET  /v1/director/targets.json  device  director metadata for the calling device (403 unless attested)
 *   POST /v1/director/nonce         device  a single-use nonce for a version report
 *   POST /v1/director/reports       device  a signed version report
 */
import { createPublicKey, X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { FastifyInstance } from 'fastify';
import { protocol } from '../../attest/index.ts';
import { EdgeguardError } from '../../errors/index.ts';
import {
  AssignRequest,
  Assignment,
  ReleaseStatusResponse,
  ReportNonce,
  ReportRequest,
  RELEASE_NAME_RE,
  MAX_VERSION_REPORT_BYTES,
} from '../../fleet/index.ts';
import { encodePublicKeyPem } from '../../crypto/index.ts';
import { DIRECTOR_TARGETS_PATH } from '../../release/index.ts';
import type { ControlPlaneContext } from '../context.ts';
import { Director, type DirectorOptions } from '../director/director.ts';
import { loadOrCreateDirectorKeys } from '../director/keys.ts';
import { ERROR_SCHEMA } from '../errors.ts';
import type { ServerPlugin } from '../plugins.ts';

const errors = {
  400: ERROR_SCHEMA,
  401: ERROR_SCHEMA,
  403: ERROR_SCHEMA,
  404: ERROR_SCHEMA,
  409: ERROR_SCHEMA,
  413: ERROR_SCHEMA,
  422: ERROR_SCHEMA,
};

export interface DirectorServerPlugin extends ServerPlugin {
  /** The director, once the plugin is registered. */
  readonly director: Director | undefined;
}

export function directorServerPlugin(options: DirectorOptions): DirectorServerPlugin {
  let director: Director | undefined;
  return {
    name: 'director',
    get director() {
      return director;
    },
    async register(app, ctx) {
      const keys = await loadOrCreateDirectorKeys(options.dataDir);
      const d = new Director(ctx, keys, options);
      director = d;
      const prune = setInterval(() => {
        d.records.pruneNonces().catch((err: unknown) => app.log.warn({ err }, 'pruning report nonces failed'));
      }, 10 * 60_000);
      prune.unref();
      app.addHook('onClose', async () => clearInterval(prune));
      const publicKey = keys.signing.key.toJSON();
      const keyView = {
        threshold: 1,
        keys: [
          {
            keyId: keys.signing.key.keyID,
            ...publicKey,
            pem: encodePublicKeyPem(createPublicKey(keys.signing.privateKey)),
          },
        ],
      };
      adminRoutes(app, ctx, d);
      deviceRoutes(app, ctx, d, keyView);
    },
  };
}

function adminRoutes(app: FastifyInstance, ctx: ControlPlaneContext, d: Director): void {
  app.post(
    '/v1/releases/assignments',
    {
      preHandler: ctx.requireAdmin,
      schema: {
        tags: ['releases'],
        summary: 'assign a published release to a device or a group (optionally a canary share of it)',
        body: protocol.jsonSchemaOf(AssignRequest),
        response: { 200: protocol.jsonSchemaOf(Assignment), ...errors },
      },
    },
    async (req) => {
      const body = AssignRequest.safeParse(req.body);
      if (!body.success)
        throw new EdgeguardError('EG_BAD_REQUEST', `the assignment is invalid: ${body.error.issues[0]?.message}.`);
      return d.assign(body.data, req.identity!.name ?? 'admin');
    },
  );

  app.get(
    '/v1/releases/status',
    {
      preHandler: ctx.requireAdmin,
      schema: {
        tags: ['releases'],
        summary: 'assignments, and per device: the assigned and installed version, the last report, failures',
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { release: { type: 'string', pattern: RELEASE_NAME_RE.source } },
        },
        response: { 200: protocol.jsonSchemaOf(ReleaseStatusResponse), ...errors },
      },
    },
    async (req) => d.status((req.query as { release?: string }).release),
  );
}

function deviceRoutes(app: FastifyInstance, ctx: ControlPlaneContext, d: Director, keyView: object): void {
  app.get(
    '/v1/director/keys',
    {
      preHandler: ctx.requireDeviceOrAdmin,
      schema: {
        tags: ['releases'],
        summary: "the director's public signing keys (TUF ed25519 keys and PEM): pin them on devices",
        response: errors,
      },
    },
    async () => keyView,
  );

  app.get(
    DIRECTOR_TARGETS_PATH,
    {
      preHandler: ctx.requireDevice,
      schema: {
        tags: ['releases'],
        summary:
          'TUF targets metadata for the calling device, signed by the director key: the releases it must run, each content key wrapped to its TPM binding key; 403 EG_ATTEST_REFUSED without fresh passing attestation',
        response: errors,
      },
    },
    async (req, reply) => reply.type('application/json').send(await d.targetsFor(req.device!)),
  );

  app.post(
    '/v1/director/nonce',
    {
      preHandler: ctx.requireDevice,
      schema: {
        tags: ['releases'],
        summary: 'a single-use nonce for the next version report of the calling device',
        body: { type: ['object', 'null'], additionalProperties: false, properties: {} },
        response: { 200: protocol.jsonSchemaOf(ReportNonce), ...errors },
      },
    },
    async (req) => d.issueNonce(req.device!.id),
  );

  app.post(
    '/v1/director/reports',
    {
      preHandler: ctx.requireDevice,
      bodyLimit: MAX_VERSION_REPORT_BYTES + 1024,
      schema: {
        tags: ['releases'],
        summary:
          'a version report (installed or failed), DSSE-signed by the device certificate key over a director nonce',
        body: protocol.jsonSchemaOf(ReportRequest),
        response: {
          200: {
            type: 'object',
            additionalProperties: false,
            properties: { id: { type: 'string' }, assignment: { type: 'string' } },
          },
          ...errors,
        },
      },
    },
    async (req) => {
      const body = ReportRequest.parse(req.body);
      const raw = (req.raw.socket as TLSSocket).getPeerCertificate(false).raw;
      return d.report(req.device!, body.envelope, new X509Certificate(raw).publicKey);
    },
  );
}
