/**
 * The control-plane HTTPS server: fastify over TLS 1.3 with a server certificate issued at start
 * by the fleet's issuing CA (key in memory only), client certificates requested on every
 * connection and checked per route (auth.ts), JSON bodies validated against the protocol's
 * schemas, OpenAPI at /docs, Prometheus metrics at /metrics (admin only), pino logs.
 */
import { generateKeyPairSync } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import Fastify, { LogController, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { Logger } from 'pino';
import { FleetCa } from '../pki/index.ts';
import type { Store } from '../store/index.ts';
import type { EkTrustStore } from '../attest/index.ts';
import { makeAuthenticator, presentsFleetCertificate, type Requirement } from './auth.ts';
import { resolvePolicy, type ControlPlaneContext, type ServerPolicyOptions, type CertificateCheck } from './context.ts';
import { limitConnectionsPerAddress } from './connections.ts';
import { EnrollmentService } from './enrollment.ts';
import { AuditEvents } from './events.ts';
import { EnrollmentFailures } from './enroll-failures.ts';
import { startHousekeeping } from './housekeeping.ts';
import { errorHandler } from './errors.ts';
import { createMetrics } from './metrics.ts';
import type { ServerPlugin } from './plugins.ts';
import { publicRoutes } from './routes/public.ts';
import { enrollRoutes } from './routes/enroll.ts';
import { deviceRoutes } from './routes/devices.ts';

/** ajv's console logger without its deprecation notice for `unicode` (see the ajv options below). */
const ajvLogger = {
  log: (...a: unknown[]) => console.log(...a),
  warn: (...a: unknown[]) => {
    if (typeof a[0] === 'string' && a[0].startsWith('DEPRECATED: option unicode.')) return;
    console.warn(...a);
  },
  error: (...a: unknown[]) => console.error(...a),
};

export interface BuildServerOptions {
  store: Store;
  ca: FleetCa;
  ekTrust: EkTrustStore;
  policy?: ServerPolicyOptions;
  /** Names the server certificate covers (default: localhost, 127.0.0.1, ::1). */
  hostnames?: string[];
  /** A pino logger, or false for none (tests). */
  logger?: Logger | false;
  /** Route modules beyond the core routes (the control plane's set: controlPlanePlugins). */
  plugins?: ServerPlugin[];
}

export interface BuiltServer {
  app: FastifyInstance;
  ctx: ControlPlaneContext;
  enrollment: EnrollmentService;
}

const CRL_MAX_AGE_MS = 5 * 60 * 1000;

export async function buildServer(opts: BuildServerOptions): Promise<BuiltServer> {
  const hostnames = opts.hostnames ?? ['localhost', '127.0.0.1', '::1'];
  const policy = resolvePolicy(opts.policy);
  const { limits } = policy;
  const serverKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const serverCert = await opts.ca.issueServerCertificate({
    hostnames,
    publicKey: serverKey.publicKey.export({ type: 'spki', format: 'der' }),
  });

  const fastifyOpts: FastifyServerOptions & { https: Record<string, unknown> } = {
    https: {
      key: serverKey.privateKey.export({ type: 'pkcs8', format: 'pem' }),
      cert: serverCert.chainPem,
      ca: [opts.ca.rootPem, opts.ca.issuingPem],
      requestCert: true,
      // Verified per route instead (auth.ts): the enrollment routes must accept certificate-less clients.
      rejectUnauthorized: false,
      minVersion: 'TLSv1.3',
    },
    // unicode: false: string lengths are UTF-16 units (String.length, as zod counts), not code
    // points: a maxLength is never more lenient (no schema has a minLength above 1), and no long
    // string is walked character by character (~0.3 ms for each attestation push's 51 KB log).
    // ajv calls the option deprecated on every compile and prints it to the console: that one
    // notice is dropped (the option still works), every other ajv message is printed as before.
    ajv: {
      customOptions: {
        removeAdditional: false,
        coerceTypes: false,
        allErrors: false,
        unicode: false,
        logger: ajvLogger,
      },
    },
    bodyLimit: 64 * 1024,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    // Slow clients: a request must be complete in time, an idle connection does not stay open.
    requestTimeout: limits.requestTimeoutMs,
    connectionTimeout: limits.connectionTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    // Errors the router raises before any route runs (a bad URL, a path parameter over the length
    // limit) get the same `{ error: { code: 'EG_...' } }` body as every other answer.
    frameworkErrors: errorHandler,
    // One line per request, written in onResponse below, and none for refused uncertified traffic.
    logController: new LogController({ disableRequestLogging: true }),
  };
  const app = Fastify({
    ...fastifyOpts,
    ...(opts.logger ? { loggerInstance: opts.logger } : { logger: false }),
  } as FastifyServerOptions) as unknown as FastifyInstance;

  app.server.headersTimeout = limits.headersTimeoutMs;

  const { registry, metrics } = createMetrics(opts.store);
  const connections = limitConnectionsPerAddress(
    app.server,
    {
      perAddress: limits.connectionsPerAddress,
      ratePerSecond: limits.connectionRatePerAddress,
      burst: limits.connectionBurstPerAddress,
      waitMs: limits.connectionWaitMs,
      overCapCloseDelayMs: limits.overCapCloseDelayMs,
      overCapHeldMax: limits.overCapHeldMax,
    },
    { refused: metrics.connectionsRefused, waiting: metrics.connectionsWaiting },
  );
  // Connections waiting for their address's rate are not yet the HTTP server's: close them, or
  // closing would wait for them.
  app.addHook('preClose', async () => connections.close());
  const authenticate = makeAuthenticator(opts.store, metrics);
  const guard =
    (need: Requirement): CertificateCheck =>
    async (req, reply) => {
      try {
        await authenticate(req, need);
      } catch (e) {
        // The body, if any, is still unread: close the connection instead of draining it.
        void reply.header('connection', 'close');
        throw e;
      }
    };
  let crlCache: { der: Buffer; at: number } | undefined;
  const events = new AuditEvents(app.log, metrics.auditEventFailures);
  const ctx: ControlPlaneContext = {
    store: opts.store,
    ca: opts.ca,
    ekTrust: opts.ekTrust,
    policy,
    metrics,
    registry,
    log: app.log,
    events,
    enrollFailures: new EnrollmentFailures(events, metrics),
    requireDevice: guard('device'),
    requireAdmin: guard('admin'),
    requireDeviceOrAdmin: guard('device-or-admin'),
    healthChecks: [],
    crlChanged: () => {
      crlCache = undefined;
    },
  };
  const crl = {
    async der(): Promise<Buffer> {
      if (crlCache && Date.now() - crlCache.at < CRL_MAX_AGE_MS) return crlCache.der;
      const revoked = await ctx.store.revokedCertificates();
      const list = await ctx.ca.createCrl(
        revoked.map((r) => ({ serial: r.serial, revokedAt: new Date(r.revoked_at!), reason: r.revocation_reason })),
      );
      crlCache = { der: Buffer.from(list.rawData), at: Date.now() };
      return crlCache.der;
    },
  };
  const enrollment = new EnrollmentService(ctx);
  startHousekeeping(app, ctx);

  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler((req, reply) => {
    void reply.status(404).send({
      error: { code: 'EG_NOT_FOUND', message: `no route ${req.method} ${req.url.split('?')[0]}; see /docs.` },
    });
  });
  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions?.url ?? 'unmatched';
    metrics.httpRequests.inc({ method: req.method, route, status: String(reply.statusCode) });
    metrics.httpDuration.observe({ method: req.method, route }, reply.elapsedTime / 1000);
    // A 4xx to a client without a fleet certificate (401 before the body, 413, 429, a malformed
    // enrollment) is anyone's traffic: the metrics above count it, and a log line each would let
    // a flood turn into log I/O. Everything else is logged once, when answered.
    // `authorized` alone is true on a resumed session that never had a certificate.
    const socket = req.raw.socket as TLSSocket;
    if (reply.statusCode >= 400 && reply.statusCode < 500 && !presentsFleetCertificate(socket)) return;
    req.log.info({ req, res: reply, responseTime: reply.elapsedTime }, 'request completed');
  });

  // A client over a rate limit (enrollment, renewals) on a keep-alive connection could go on
  // sending refused requests at the speed of its socket; closing the connection after the 429
  // makes each further try a new connection, which waits for the per-address connection rate
  // before the TLS handshake (policy.limits.connectionRatePerAddress).
  app.addHook('onSend', async (_req, reply, payload) => {
    if (reply.statusCode === 429) void reply.header('connection', 'close');
    return payload;
  });
  await app.register(rateLimit, {
    global: false,
    errorResponseBuilder: (_req, c) => ({
      statusCode: 429,
      error: {
        code: 'EG_RATE_LIMITED',
        message: `too many enrollment requests; retry in ${Math.ceil(c.ttl / 1000)} s.`,
      },
    }),
  });
  // OpenAPI 3.1 for the mutualTLS security scheme type (the plugin's types know only 3.0's).
  const openapi = {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'edgeguard control plane',
        version: '1',
        description:
          'Fleet PKI, TPM-proven device enrollment and device management. Routes that list no security requirement (health, docs, CA, CRL, enrollment, public audit reads) need no client certificate; every other route needs one issued by the fleet CA.',
      },
      components: {
        securitySchemes: {
          deviceCertificate: {
            type: 'mutualTLS',
            description: 'A device certificate (OU=device) issued at enrollment.',
          },
          adminCertificate: {
            type: 'mutualTLS',
            description: 'An admin certificate (OU=admin) from `edgeguard admin cert`.',
          },
        },
      },
    },
  } as unknown as Parameters<typeof swagger>[1];
  await app.register(swagger, openapi);
  await app.register(swaggerUi, { routePrefix: '/docs' });

  await publicRoutes(app, ctx, crl);
  await enrollRoutes(app, ctx, enrollment);
  await deviceRoutes(app, ctx, enrollment);

  const seen = new Set<string>();
  for (const p of opts.plugins ?? []) {
    if (seen.has(p.name)) continue;
    seen.add(p.name);
    await p.register(app, ctx);
  }
  await app.ready();
  return { app, ctx, enrollment };
}
